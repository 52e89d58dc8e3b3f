import { Rng } from "@rarl/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidGenerationParamError } from "./errors";
import {
  allCandidates,
  applyMinP,
  applyRepetitionPenalty,
  applyTemperature,
  applyTopK,
  applyTopP,
  argmax,
  candidateProbs,
  expNonPositive,
  kthLargest,
  logSoftmaxAt,
  logSumExp,
  resolveSamplingParams,
  rowPass,
  isPlainSampling,
  sampleFromProbs,
  sampleRow,
  selectToken,
  warp,
} from "./sampling";

const f32 = (a: number[]) => Float32Array.from(a);
const logs = (p: number[]) => f32(p.map((x) => Math.log(x)));
const keptIds = (c: { ids: Int32Array }) => Array.from(c.ids).sort((a, b) => a - b);

/** Straightforward HF TopPLogitsWarper (full ascending sort + cumsum), as the reference for the fast one. */
function refTopP(logits: number[], topP: number): number[] {
  const m = Math.max(...logits);
  const e = logits.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  const p = e.map((x) => x / s);
  const order = p.map((_, i) => i).sort((a, b) => p[a] - p[b] || b - a);
  const keep: number[] = [];
  let cum = 0;
  order.forEach((i, j) => {
    cum += p[i];
    if (!(cum <= 1 - topP) || j === order.length - 1) keep.push(i);
  });
  return keep.sort((a, b) => a - b);
}

describe("logits processing (HF semantics)", () => {
  it("repetition penalty divides positive and multiplies negative logits of seen ids, once each", () => {
    const x = f32([2, -2, 1, 0.5]);
    applyRepetitionPenalty(x, [0, 1, 0, 1], 2);
    expect(Array.from(x)).toEqual([1, -4, 1, 0.5]);
    const y = f32([2, -2]);
    applyRepetitionPenalty(y, [0], 1);
    expect(Array.from(y)).toEqual([2, -2]);
  });

  it("temperature divides logits", () => {
    const c = applyTemperature(allCandidates(f32([1, -2, 4])), 0.5);
    expect(Array.from(c.logits)).toEqual([2, -4, 8]);
  });

  it("top-k keeps the k largest and ties with the k-th; 0 is off", () => {
    const x = f32([1, 5, 3, 3, 0, 4]);
    expect(kthLargest(x, 3)).toBe(3);
    expect(keptIds(applyTopK(allCandidates(x), 3))).toEqual([1, 2, 3, 5]);
    expect(keptIds(applyTopK(allCandidates(x), 1))).toEqual([1]);
    expect(keptIds(applyTopK(allCandidates(x), 0))).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("top-p keeps the smallest most-likely set reaching p", () => {
    const x = logs([0.05, 0.5, 0.15, 0.3]);
    expect(keptIds(applyTopP(allCandidates(x), 0.75))).toEqual([1, 3]);
    expect(keptIds(applyTopP(allCandidates(x), 0.85))).toEqual([1, 2, 3]);
    expect(keptIds(applyTopP(allCandidates(x), 0.1))).toEqual([1]);
    expect(keptIds(applyTopP(allCandidates(x), 1))).toEqual([0, 1, 2, 3]);
  });

  it("top-p equals a full-sort HF reference on random rows", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -8, max: 8, noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 300 }),
        fc.double({ min: 0.01, max: 0.99, noNaN: true }),
        (vals, p) => {
          const x = f32(vals);
          expect(keptIds(applyTopP(allCandidates(x), p))).toEqual(refTopP(Array.from(x), p));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("min-p drops tokens below min_p x top probability", () => {
    const x = logs([0.05, 0.5, 0.15, 0.3]);
    expect(keptIds(applyMinP(allCandidates(x), 0.2))).toEqual([1, 2, 3]);
    expect(keptIds(applyMinP(allCandidates(x), 0.5))).toEqual([1, 3]);
    expect(keptIds(applyMinP(allCandidates(x), 1))).toEqual([1]);
  });

  it("warpers run in HF order: temperature changes what top-p keeps", () => {
    const x = logs([0.05, 0.5, 0.15, 0.3]);
    const base = resolveSamplingParams({ topP: 0.75 });
    expect(keptIds(warp(x, base))).toEqual([1, 3]);
    // Temperature 0.25 sharpens before top-p: 0.5 alone then carries > 75% of the mass.
    expect(keptIds(warp(x, { ...base, temperature: 0.25 }))).toEqual([1]);
    // top-k before top-p: with k=1 only the top token is left.
    expect(keptIds(warp(x, { ...base, topK: 1, topP: 0.99 }))).toEqual([1]);
  });

  it("log-sum-exp, log-softmax and argmax", () => {
    const x = f32([1000, 1000]);
    expect(logSumExp(x)).toBeCloseTo(1000 + Math.log(2), 6);
    expect(logSoftmaxAt(f32([0, Math.log(3)]), 1)).toBeCloseTo(Math.log(0.75), 6);
    expect(argmax(f32([1, 3, 3, 2]))).toBe(1);
    const p = candidateProbs(allCandidates(logs([0.2, 0.8])));
    expect(p[0]).toBeCloseTo(0.2, 6);
  });
});

describe("selectToken", () => {
  it("greedy takes the argmax after the repetition penalty", () => {
    const x = f32([3, 2.5, -1]);
    expect(selectToken(x, [], resolveSamplingParams({ doSample: false }), null)).toBe(0);
    expect(selectToken(x, [0], resolveSamplingParams({ doSample: false, repetitionPenalty: 1.5 }), null)).toBe(1);
    expect(Array.from(x)).toEqual([3, 2.5, -1]); // input untouched
  });

  it("samples with the warped distribution and is deterministic per seed", () => {
    const x = logs([0.1, 0.6, 0.3]);
    const p = resolveSamplingParams({});
    const draw = (seed: number, n: number) => {
      const rng = new Rng(seed);
      return Array.from({ length: n }, () => selectToken(x, [], p, rng));
    };
    expect(draw(7, 50)).toEqual(draw(7, 50));
    expect(draw(7, 50)).not.toEqual(draw(8, 50));
    const counts = [0, 0, 0];
    for (const t of draw(1, 6000)) counts[t]++;
    expect(counts[0] / 6000).toBeCloseTo(0.1, 1);
    expect(counts[1] / 6000).toBeCloseTo(0.6, 1);
    // min-p 0.4 removes token 0 (0.1 < 0.24) entirely.
    const rng = new Rng(3);
    const q = resolveSamplingParams({ minP: 0.4 });
    for (let i = 0; i < 500; i++) expect(selectToken(x, [], q, rng)).not.toBe(0);
  });
});

describe("expNonPositive", () => {
  it("is within 1e-8 relative of Math.exp on [-87, 0] (dense grid, exact powers of two, random points) and 0 below", () => {
    let worst = 0;
    const check = (x: number) => {
      const want = Math.exp(x);
      worst = Math.max(worst, Math.abs(expNonPositive(x) - want) / want);
    };
    for (let x = -87; x <= 0; x += 0.000731) check(x);
    for (let n = 0; n <= 125; n++) check(-n * Math.LN2); // n·ln2 and the rounding boundaries around it
    for (let n = 0; n <= 125; n++) check(-(n + 0.5) * Math.LN2);
    fc.assert(
      fc.property(fc.double({ min: -87, max: 0, noNaN: true }), (x) => {
        check(x);
      }),
    );
    expect(worst).toBeLessThan(1e-8);
    expect(expNonPositive(0)).toBe(1);
    expect(expNonPositive(-87.5)).toBe(0);
    expect(expNonPositive(Number.NEGATIVE_INFINITY)).toBe(0);
    expect(expNonPositive(Number.NaN)).toBe(0);
  });
  it("rowPass's log-sum-exp matches logSumExp to 1e-7 on a vocab-sized row", () => {
    const src = new Rng(2);
    const x = Float32Array.from({ length: 151936 }, () => src.normal(0, 4));
    const pass = rowPass(x, new Float32Array(x.length));
    expect(Math.abs(pass.max + Math.log(pass.sumExp) - logSumExp(x))).toBeLessThan(1e-7);
  });
});

describe("sampleRow", () => {
  it("returns the raw log-prob of the chosen token on every path, and samples the softmax on the fast path", () => {
    const x = logs([0.1, 0.6, 0.3]);
    const scratch = new Float32Array(3);
    const rng = new Rng(5);
    for (const params of [{ doSample: false }, {}, { topK: 2 }, { temperature: 0.5 }, { repetitionPenalty: 3, doSample: false }]) {
      const r = sampleRow(x, [1], resolveSamplingParams(params), rng, scratch);
      expect(r.logprob).toBeCloseTo(logSoftmaxAt(x, r.token), 6);
    }
    expect(sampleRow(x, [], resolveSamplingParams({ doSample: false }), null, scratch).token).toBe(1);
    // penalty 3 on id 1: log(0.6)/... is negative, so it is multiplied by 3 -> id 2 wins
    expect(sampleRow(x, [1], resolveSamplingParams({ doSample: false, repetitionPenalty: 3 }), null, scratch).token).toBe(2);
    const counts = [0, 0, 0];
    const p = resolveSamplingParams({});
    for (let i = 0; i < 6000; i++) counts[sampleRow(x, [], p, rng, scratch).token]++;
    expect(counts[2] / 6000).toBeCloseTo(0.3, 1);
    expect(counts[0] / 6000).toBeCloseTo(0.1, 1);
  });
  it("never picks a suppressed id (greedy or sampled, any warper) and keeps the raw log-prob of the chosen one", () => {
    const x = logs([0.05, 0.7, 0.2, 0.05]); // id 1 is the argmax and most of the mass
    const scratch = new Float32Array(4);
    const rng = new Rng(9);
    for (const params of [{ doSample: false }, {}, { topK: 1 }, { temperature: 0.3 }, { topP: 0.5 }, { repetitionPenalty: 2 }]) {
      const p = resolveSamplingParams({ ...params, suppressTokens: [1] });
      for (let i = 0; i < 300; i++) {
        const r = sampleRow(x, [0], p, rng, scratch);
        expect(r.token).not.toBe(1);
        expect(r.logprob).toBeCloseTo(logSoftmaxAt(x, r.token), 6);
      }
    }
    expect(sampleRow(x, [], resolveSamplingParams({ doSample: false, suppressTokens: [1, 7] }), null, scratch).token).toBe(2);
  });
  it("gives the same tokens and log-probs with one shared rowPass as with a pass per row (G rows of one logits row)", () => {
    const src = new Rng(11);
    const x = Float32Array.from({ length: 500 }, () => src.normal(0, 3));
    for (const params of [{}, { doSample: false }, { topP: 0.8 }, { topK: 5, temperature: 0.7 }, { repetitionPenalty: 1.3 }]) {
      const p = resolveSamplingParams(params);
      const a = new Rng(3);
      const b = new Rng(3);
      const s1 = new Float32Array(500);
      const s2 = new Float32Array(500);
      const pass = rowPass(x, s2);
      expect(pass.argmax).toBe(argmax(x));
      expect(pass.max + Math.log(pass.sumExp)).toBeCloseTo(logSumExp(x), 5);
      for (let g = 0; g < 8; g++) {
        const own = sampleRow(x, [g], p, a, s1);
        const shared = sampleRow(x, [g], p, b, s2, pass);
        expect(shared).toEqual(own);
      }
    }
  });
});

describe("sampleFromProbs (plain sampling from the backend's softmax)", () => {
  it("samples the row's distribution with one draw per pick, as sampleRow's plain path, and returns log(p)", () => {
    const p = f32([0.1, 0.6, 0.3]);
    const x = logs([0.1, 0.6, 0.3]);
    const a = new Rng(21);
    const b = new Rng(21);
    const scratch = new Float32Array(3);
    const plain = resolveSamplingParams({});
    const counts = [0, 0, 0];
    for (let i = 0; i < 6000; i++) {
      const r = sampleFromProbs(p, a);
      expect(r.logprob).toBeCloseTo(logSoftmaxAt(x, r.token), 6);
      expect(r.token).toBe(sampleRow(x, [], plain, b, scratch).token); // same draw, same pick
      counts[r.token]++;
    }
    expect(counts[1] / 6000).toBeCloseTo(0.6, 1);
    expect(counts[0] / 6000).toBeCloseTo(0.1, 1);
  });
  it("gives the last token with mass to a draw beyond a row that sums to less than 1, and rejects a row with none", () => {
    const rng = { random: () => 0.999999 } as unknown as Rng;
    expect(sampleFromProbs(f32([0.5, 0.4, 0, 0]), rng).token).toBe(1);
    expect(() => sampleFromProbs(f32([0, 0]), rng)).toThrow(InvalidGenerationParamError);
  });
  it("is used only when the distribution is the raw softmax", () => {
    expect(isPlainSampling(resolveSamplingParams({}))).toBe(true);
    for (const q of [{ doSample: false }, { temperature: 0.7 }, { topK: 20 }, { topP: 0.9 }, { minP: 0.1 }, { repetitionPenalty: 1.1 }, { suppressTokens: [3] }]) {
      expect(isPlainSampling(resolveSamplingParams(q))).toBe(false);
    }
  });
});

describe("resolveSamplingParams", () => {
  it("fills defaults", () => {
    expect(resolveSamplingParams()).toEqual({ doSample: true, temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, suppressTokens: [] });
  });
  it.each([
    [{ temperature: 0 }, "temperature"],
    [{ temperature: -1 }, "temperature"],
    [{ topP: 0 }, "topP"],
    [{ topP: 1.5 }, "topP"],
    [{ topK: -1 }, "topK"],
    [{ topK: 1.5 }, "topK"],
    [{ minP: -0.1 }, "minP"],
    [{ minP: 1.1 }, "minP"],
    [{ repetitionPenalty: 0 }, "repetitionPenalty"],
    [{ suppressTokens: [1.5] }, "suppressTokens"],
    [{ suppressTokens: [-1] }, "suppressTokens"],
  ])("rejects %o with a typed error naming %s", (params, field) => {
    try {
      resolveSamplingParams(params);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidGenerationParamError);
      expect((e as InvalidGenerationParamError).details.field).toBe(field);
      expect((e as Error).message).toContain(field);
    }
  });
  it("allows temperature 0 for greedy decoding", () => {
    expect(resolveSamplingParams({ doSample: false, temperature: 0 }).doSample).toBe(false);
  });
});
