import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { GrpoInputError } from "../errors";
import {
  entropyThreshold,
  type GrpoLossOptions,
  grpoLoss,
  grpoMetrics,
  type ImportanceSamplingLevel,
  type LossType,
  vllmImportanceSamplingRatio,
} from "./loss";

beforeAll(async () => {
  await initBackend();
});

// The hand-worked batch of loss.test.ts: B = 2, T = 2, ε = 0.2.
// Row 0: A = +1, ratios [1.5, 1]; row 1: A = −1, ratios [0.5, (masked)].
const OLD = [
  [-1, -2],
  [-1, -0.5],
];
const LOGP = [
  [-1 + Math.log(1.5), -2],
  [-1 + Math.log(0.5), -0.5],
];
const MASK = [
  [1, 1],
  [1, 0],
];
const ADV = [1, -1];

function withBatch<T>(fn: (t: { logp: tf.Tensor2D; oldLogp: tf.Tensor2D; mask: tf.Tensor2D; advantages: number[] }) => T): T {
  const logp = tf.tensor2d(LOGP);
  const oldLogp = tf.tensor2d(OLD);
  const mask = tf.tensor2d(MASK);
  try {
    return fn({ logp, oldLogp, mask, advantages: ADV });
  } finally {
    tf.dispose([logp, oldLogp, mask]);
  }
}

const num = (t: tf.Tensor) => {
  const v = t.dataSync()[0];
  t.dispose();
  return v;
};

describe("grpoLoss, new loss types and options (hand-worked)", () => {
  it("dapo: Σ masked per-token loss / tokens of the whole generation batch (numItemsInBatch)", () => {
    withBatch((b) => {
      // per-token [-1.2, -1, 0.8] (see loss.test.ts): sum −1.4
      expect(num(grpoLoss(b, { beta: 0, epsilonLow: 0.2, lossType: "dapo" }))).toBeCloseTo(-1.4 / 3, 6);
      expect(num(grpoLoss(b, { beta: 0, epsilonLow: 0.2, lossType: "dapo", numItemsInBatch: 7 }))).toBeCloseTo(-1.4 / 7, 6);
    });
  });

  it("cispo: −min(r, ε_high).detach()·A·logp, normalised like dapo; its gradient is −min(r, ε_high)·A / N", () => {
    withBatch((b) => {
      const o: GrpoLossOptions = { beta: 0, epsilonLow: 0.2, epsilonHigh: 1.2, lossType: "cispo" };
      // row 0 t0: r 1.5 → 1.2: −1.2·(−1 + ln 1.5); t1: −1·(−2) = 2; row 1 t0: r 0.5: −0.5·(−1)·(−1 + ln 0.5)
      const want = (-1.2 * (-1 + Math.log(1.5)) + 2 + 0.5 * (-1 + Math.log(0.5))) / 3;
      expect(num(grpoLoss(b, o))).toBeCloseTo(want, 5);
      const g = tf.grad((x: tf.Tensor) => grpoLoss({ ...b, logp: x as tf.Tensor2D }, o))(b.logp);
      const d = g.arraySync() as number[][];
      g.dispose();
      expect(d[0][0]).toBeCloseTo(-1.2 / 3, 6);
      expect(d[0][1]).toBeCloseTo(-1 / 3, 6);
      expect(d[1][0]).toBeCloseTo(0.5 / 3, 6);
      expect(d[1][1]).toBe(0);
      const m = grpoMetrics(b, o);
      expect(m.cispoClip).toBeCloseTo(1 / 3, 6); // r > ε_high and A > 0: row 0 token 0 only
    });
  });

  it("sequence level (GSPO): w = exp(masked mean log-ratio) per sequence, clip counts per sequence", () => {
    withBatch((b) => {
      // row 0: w = exp(ln 1.5 / 2) = 1.2247 > 1.2, A = +1 → −1.2 on both tokens; row 1: w = 0.5, A = −1 → min(−0.5, −0.8) → 0.8.
      const o: GrpoLossOptions = { beta: 0, epsilonLow: 0.2, lossType: "grpo", importanceSamplingLevel: "sequence" };
      expect(num(grpoLoss(b, o))).toBeCloseTo((-1.2 + 0.8) / 2, 6);
      expect(num(grpoLoss(b, { ...o, lossType: "bnpo" }))).toBeCloseTo((-1.2 * 2 + 0.8) / 3, 6);
      expect(num(grpoLoss(b, { ...o, lossType: "dr_grpo", maxCompletionLength: 4 }))).toBeCloseTo((-1.2 * 2 + 0.8) / 8, 6);
      const m = grpoMetrics(b, o);
      expect(m.clipLow).toBeCloseTo(0.5, 6);
      expect(m.clipHigh).toBeCloseTo(0.5, 6);
      expect(m.clipRegion).toBeCloseTo(1, 6);
      // Unclipped with ε_high = 0.5: row 0's own-token mean is −w·A = −w itself and d w/d logp_t = w / 2, so the grpo
      // gradient is −w/2 · 1/2 (mean over sequences) = −w/4 on each of row 0's tokens.
      const g = tf.grad((x: tf.Tensor) => grpoLoss({ ...b, logp: x as tf.Tensor2D }, { ...o, epsilonHigh: 0.5 }))(b.logp);
      const d = g.arraySync() as number[][];
      g.dispose();
      expect(d[0][0]).toBeCloseTo(-Math.sqrt(1.5) / 4, 6);
      expect(d[0][1]).toBeCloseTo(-Math.sqrt(1.5) / 4, 6);
      expect(d[1][0]).toBe(0); // row 1 is clipped (w 0.5 < 0.8, A < 0)
      expect(d[1][1]).toBe(0);
    });
  });

  it("per-token advantages [B, T] (TRL accepts them for subclasses) equal per-sequence ones repeated", () => {
    withBatch((b) => {
      const adv2 = tf.tensor2d([
        [1, 1],
        [-1, -1],
      ]);
      for (const lossType of ["grpo", "dapo", "cispo"] as const) {
        const o: GrpoLossOptions = { beta: 0, epsilonLow: 0.2, epsilonHigh: 1.3, lossType, importanceSamplingLevel: "sequence" };
        expect(num(grpoLoss({ ...b, advantages: adv2 }, o))).toBeCloseTo(num(grpoLoss(b, o)), 6);
      }
      const bad2 = tf.ones([2, 3]) as tf.Tensor2D;
      expect(() => grpoLoss({ ...b, advantages: bad2 }, { beta: 0, epsilonLow: 0.2, lossType: "grpo" })).toThrow(/advantages has shape \[2,3\]/);
      tf.dispose([adv2, bad2]);
    });
  });

  it("cispo ignores delta (as TRL)", () => {
    withBatch((b) => {
      const o: GrpoLossOptions = { beta: 0, epsilonLow: 0.2, epsilonHigh: 1.2, lossType: "cispo" };
      expect(num(grpoLoss(b, { ...o, delta: 1.1 }))).toBe(num(grpoLoss(b, o)));
    });
  });

  it("sequence-level clip shares count sequences (all of them), token-level ones count tokens, also when T = 1", () => {
    const logp = tf.tensor2d([[Math.log(1.5) - 1], [-1]]);
    const oldLogp = tf.tensor2d([[-1], [-1]]);
    const mask = tf.tensor2d([[1], [0]]);
    const inp = { logp, oldLogp, mask, advantages: [1, -1] };
    expect(grpoMetrics(inp, { epsilonLow: 0.2, importanceSamplingLevel: "sequence" }).clipHigh).toBeCloseTo(0.5, 6);
    expect(grpoMetrics(inp, { epsilonLow: 0.2, importanceSamplingLevel: "token" }).clipHigh).toBeCloseTo(1, 6);
    tf.dispose([logp, oldLogp, mask]);
  });

  it("delta caps the unclipped ratio term (two-sided clip)", () => {
    // One token, A = −1, ratio 3: plain clip gives −min(−3, −1.2) = 3; with δ = 2: −min(−2, −1.2) = 2.
    const logp = tf.tensor2d([[Math.log(3) - 1]]);
    const old = tf.tensor2d([[-1]]);
    const mask = tf.tensor2d([[1]]);
    const inp = { logp, oldLogp: old, mask, advantages: [-1] };
    expect(num(grpoLoss(inp, { beta: 0, epsilonLow: 0.2, lossType: "grpo" }))).toBeCloseTo(3, 5);
    expect(num(grpoLoss(inp, { beta: 0, epsilonLow: 0.2, lossType: "grpo", delta: 2 }))).toBeCloseTo(2, 5);
    // Capped: no gradient through the ratio.
    const g = tf.grad((x: tf.Tensor) => grpoLoss({ ...inp, logp: x as tf.Tensor2D }, { beta: 0, epsilonLow: 0.2, lossType: "grpo", delta: 2 }))(logp);
    expect(g.dataSync()[0]).toBe(0);
    tf.dispose([logp, old, mask, g]);
  });

  it("topEntropyQuantile keeps the policy term on tokens with entropy ≥ torch.quantile(1 − ρ)", () => {
    // counted entropies [0.5, 2, 1] (row 1 token 1 is padding)
    expect(entropyThreshold([0.5, 2, 1, 9], [1, 1, 1, 0], 0.5)).toBeCloseTo(1, 9); // median
    expect(entropyThreshold([0.5, 2, 1, 9], [1, 1, 1, 0], 0.2)).toBeCloseTo(1.6, 9); // pos 1.6 between 1 and 2
    expect(entropyThreshold([0.5, 2, 1, 9], [1, 1, 1, 0], 1)).toBeCloseTo(0.5, 9);
    withBatch((b) => {
      const entropy = tf.tensor2d([
        [0.5, 2],
        [1, 9],
      ]);
      const o: GrpoLossOptions = { beta: 0, epsilonLow: 0.2, lossType: "grpo" };
      // ρ = 0.5 keeps row 0 token 1 (−1) and row 1 token 0 (0.8): mean(−1/2, 0.8/1) = 0.15 (the own-token counts stay 2 and 1).
      expect(num(grpoLoss({ ...b, entropy }, { ...o, topEntropyQuantile: 0.5 }))).toBeCloseTo(0.15, 6);
      // ρ = 0.2 keeps only row 0 token 1: mean(−1/2, 0) = −0.25.
      expect(num(grpoLoss({ ...b, entropy }, { ...o, topEntropyQuantile: 0.2 }))).toBeCloseTo(-0.25, 6);
      // ρ = 1 is the plain loss.
      expect(num(grpoLoss({ ...b, entropy }, { ...o, topEntropyQuantile: 1 }))).toBeCloseTo(-0.15, 6);
      const m = grpoMetrics({ ...b, entropy }, { ...o, topEntropyQuantile: 0.5 });
      expect(m.entropy).toBeCloseTo(3.5 / 3, 6);
      expect(m.entropyKept).toBeCloseTo(2 / 3, 6);
      // The KL term is not masked by entropy.
      const ref = tf.tidy(() => tf.add(b.logp, tf.tensor2d([[Math.log(2), 0], [0, 0]])) as tf.Tensor2D);
      const kl = 2 - Math.log(2) - 1;
      expect(num(grpoLoss({ ...b, entropy, refLogp: ref }, { ...o, beta: 0.1, topEntropyQuantile: 0.2 }))).toBeCloseTo(((0.1 * kl - 1) / 2 + 0) / 2, 6);
      tf.dispose([entropy, ref]);
    });
  });

  it("importanceSamplingRatio multiplies the policy term before the KL is added", () => {
    withBatch((b) => {
      const isr = tf.tensor2d([[0.5], [2]]);
      // per-token [-1.2, -1] × 0.5, [0.8] × 2 → grpo mean(−1.1/2, 1.6) = 0.525
      expect(num(grpoLoss({ ...b, importanceSamplingRatio: isr }, { beta: 0, epsilonLow: 0.2, lossType: "grpo" }))).toBeCloseTo(0.525, 6);
      isr.dispose();
    });
  });

  it("vllmImportanceSamplingRatio: token/sequence × truncate/mask (TRL's four modes)", () => {
    const old = tf.tensor2d([
      [-1, -1],
      [-1, -1],
    ]);
    const samp = tf.tensor2d([
      [-1 - Math.log(4), -1 + Math.log(2)],
      [-1, -1 - Math.log(1.5)],
    ]);
    const mask = tf.tensor2d([
      [1, 1],
      [1, 1],
    ]);
    const run = (mode: Parameters<typeof vllmImportanceSamplingRatio>[3], max: number | null, min: number | null = null) => {
      const r = vllmImportanceSamplingRatio(old, samp, mask, mode, max, min);
      const v = r.arraySync() as number[][];
      r.dispose();
      return v.flat();
    };
    // per-token ratios exp(old − samp): [4, 0.5, 1, 1.5]; per sequence: [2, 1.5]
    const close = (a: number[], b: number[]) => {
      for (const [i, x] of a.entries()) expect(x).toBeCloseTo(b[i], 5);
    };
    close(run("token_truncate", 3), [3, 0.5, 1, 1.5]);
    close(run("token_truncate", 3, 0.8), [3, 0.8, 1, 1.5]);
    close(run("token_mask", 3), [0, 0.5, 1, 1.5]);
    close(run("token_mask", 3, 0.8), [0, 0, 1, 1.5]);
    close(run("sequence_truncate", 1.8), [1.8, 1.5]);
    close(run("sequence_mask", 1.8), [0, 1.5]);
    close(run("sequence_mask", null, 1.6), [2, 0]);
    expect(() => run("bogus" as never, 3)).toThrow(/vllmImportanceSamplingMode/);
    tf.dispose([old, samp, mask]);
  });

  it("rejects bad options with the option's name", () => {
    withBatch((b) => {
      const o: GrpoLossOptions = { beta: 0, epsilonLow: 0.2, lossType: "grpo" };
      expect(() => grpoLoss(b, { ...o, lossType: "ppo" as LossType })).toThrow(/unknown lossType "ppo"/);
      expect(() => grpoLoss(b, { ...o, importanceSamplingLevel: "group" as ImportanceSamplingLevel })).toThrow(/importanceSamplingLevel/);
      // As TRL, cispo without epsilonHigh caps the ratio at epsilon (the trainer config rejects this combination).
      expect(num(grpoLoss(b, { ...o, lossType: "cispo" }))).toBeCloseTo(num(grpoLoss(b, { ...o, lossType: "cispo", epsilonHigh: 0.2 })), 7);
      expect(() => grpoLoss(b, { ...o, delta: 1.2 })).toThrow(/delta must be > 1 \+ epsilonHigh/);
      expect(() => grpoLoss(b, { ...o, topEntropyQuantile: 0 })).toThrow(/topEntropyQuantile must be in \(0, 1\]/);
      expect(() => grpoLoss(b, { ...o, topEntropyQuantile: 0.5 })).toThrow(/needs the per-token entropy/);
      try {
        grpoLoss(b, { ...o, lossType: "dr_grpo" });
      } catch (e) {
        expect(e).toBeInstanceOf(GrpoInputError);
        expect((e as GrpoInputError).details?.field).toBe("maxCompletionLength");
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// A float64 transcription of TRL's GRPOTrainer._compute_loss (per element, no tensors), used to check every
// combination's value, and, by central finite differences, the gradient of grpoLoss w.r.t. logp. `logpDet` is the
// value the detached tensors take (old when μ = 1, and CISPO's clamped ratio): perturbing `logp` leaves it alone, as
// autograd does.
interface RefCase {
  logp: number[][];
  old: number[][] | null;
  ref: number[][] | null;
  adv: number[];
  mask: number[][];
  entropy: number[][] | null;
  isr: number[][] | null;
}

function refLoss(c: RefCase, logpDet: number[][], o: GrpoLossOptions): number {
  const B = c.logp.length;
  const T = c.logp[0].length;
  const old = c.old ?? logpDet;
  const level = o.importanceSamplingLevel ?? "token";
  const eh = o.epsilonHigh ?? o.epsilonLow;
  const logW = (lp: number[][], b: number, t: number) => {
    if (level === "token") return lp[b][t] - old[b][t];
    let s = 0;
    let n = 0;
    for (let k = 0; k < T; k++) {
      s += (lp[b][k] - old[b][k]) * c.mask[b][k];
      n += c.mask[b][k];
    }
    return s / Math.max(n, 1);
  };
  let thr: number | null = null;
  const q = o.topEntropyQuantile ?? 1;
  if (q < 1) thr = entropyThreshold(c.entropy!.flat(), c.mask.flat(), q);
  const per: number[][] = [];
  for (let b = 0; b < B; b++) {
    per.push([]);
    for (let t = 0; t < T; t++) {
      const A = c.adv[b];
      let l: number;
      if (o.lossType === "cispo") {
        l = -Math.min(Math.exp(logW(logpDet, b, t)), eh) * A * c.logp[b][t];
      } else {
        let c1 = Math.exp(logW(c.logp, b, t));
        const c2 = Math.min(Math.max(c1, 1 - o.epsilonLow), 1 + eh);
        if (o.delta != null) c1 = Math.min(c1, o.delta);
        l = -Math.min(c1 * A, c2 * A);
      }
      if (thr !== null) l *= c.entropy![b][t] * c.mask[b][t] >= thr && c.mask[b][t] ? 1 : 0;
      if (c.isr) l *= c.isr[b][c.isr[b].length === 1 ? 0 : t];
      if (o.beta !== 0 && c.ref) {
        const d = c.ref[b][t] - c.logp[b][t];
        l += o.beta * (Math.exp(d) - d - 1);
      }
      per[b].push(l * c.mask[b][t]);
    }
  }
  const rowSum = per.map((r) => r.reduce((a, x) => a + x, 0));
  const rowN = c.mask.map((r) => r.reduce((a, x) => a + x, 0));
  const all = rowSum.reduce((a, x) => a + x, 0);
  const N = rowN.reduce((a, x) => a + x, 0);
  switch (o.lossType) {
    case "grpo":
      return rowSum.reduce((a, s, b) => a + s / Math.max(rowN[b], 1), 0) / B;
    case "bnpo":
      return all / Math.max(N, 1);
    case "dr_grpo":
      return all / (B * o.maxCompletionLength!);
    default:
      return all / Math.max(o.numItemsInBatch ?? N, 1);
  }
}

function randomCase(rng: Rng, B: number, T: number): RefCase {
  const m = (f: () => number) => Array.from({ length: B }, () => Array.from({ length: T }, f));
  const old = m(() => -0.2 - 2 * rng.uniform(0, 1));
  // ratios spread over [0.4, 2.5] so that every clip branch is hit; kept ≥ 0.02 away from the kinks below.
  const logp = old.map((r) => r.map((x) => x + Math.log(rng.uniform(0.4, 2.5))));
  const lengths = Array.from({ length: B }, (_, b) => (b === 0 ? T : 1 + Math.floor(rng.uniform(0, T))));
  const mask = lengths.map((L) => Array.from({ length: T }, (_, t) => (t < L ? 1 : 0)));
  return {
    logp,
    old,
    ref: m(() => -0.2 - 2 * rng.uniform(0, 1)),
    adv: Array.from({ length: B }, () => rng.uniform(-1.5, 1.5)),
    mask,
    entropy: m(() => rng.uniform(0, 3)),
    isr: m(() => rng.uniform(0.5, 1.5)),
  };
}

describe("grpoLoss equals TRL's formulas (float64 transcription) on every combination, value and d/dlogp", () => {
  const lossTypes: LossType[] = ["grpo", "bnpo", "dr_grpo", "dapo", "cispo"];
  const levels: ImportanceSamplingLevel[] = ["token", "sequence"];
  const variants = [
    { name: "plain", o: {}, oldGiven: true, ref: false, ent: false, isr: false },
    { name: "μ=1 (old = logp detached)", o: {}, oldGiven: false, ref: false, ent: false, isr: false },
    { name: "β=0.04 + KL", o: { beta: 0.04 }, oldGiven: true, ref: true, ent: false, isr: false },
    { name: "clip-higher ε_high 0.28", o: { epsilonHigh: 0.28 }, oldGiven: true, ref: false, ent: false, isr: false },
    { name: "δ = 1.6", o: { delta: 1.6 }, oldGiven: true, ref: false, ent: false, isr: false },
    { name: "top 40% entropy", o: { topEntropyQuantile: 0.4 }, oldGiven: true, ref: false, ent: true, isr: false },
    { name: "vLLM IS ratio + β + δ + entropy + numItemsInBatch", o: { beta: 0.1, delta: 1.5, topEntropyQuantile: 0.7, numItemsInBatch: 40 }, oldGiven: true, ref: true, ent: true, isr: true },
  ];
  const rng = new Rng(1234);
  for (const lossType of lossTypes) {
    for (const level of levels) {
      for (const v of variants) {
        it(`${lossType} / ${level} / ${v.name}`, () => {
          const c = randomCase(rng, 3, 4);
          const opts: GrpoLossOptions = {
            beta: 0,
            epsilonLow: 0.2,
            lossType,
            importanceSamplingLevel: level,
            maxCompletionLength: 6,
            ...v.o,
            ...(lossType === "cispo" ? { epsilonHigh: 1.3, delta: undefined } : {}),
          };
          const rc: RefCase = { ...c, old: v.oldGiven ? c.old : null, ref: v.ref ? c.ref : null, entropy: v.ent ? c.entropy : null, isr: v.isr ? c.isr : null };
          const want = refLoss(rc, c.logp, opts);
          const t = {
            oldLogp: rc.old ? tf.tensor2d(rc.old) : null,
            refLogp: rc.ref ? tf.tensor2d(rc.ref) : null,
            entropy: rc.entropy ? tf.tensor2d(rc.entropy) : null,
            importanceSamplingRatio: rc.isr ? tf.tensor2d(rc.isr) : null,
            mask: tf.tensor2d(rc.mask),
            advantages: rc.adv,
          };
          const logp = tf.tensor2d(c.logp);
          const got = num(grpoLoss({ ...t, logp }, opts));
          expect(Math.abs(got - want)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want)));
          const g = tf.grad((x: tf.Tensor) => grpoLoss({ ...t, logp: x as tf.Tensor2D }, opts))(logp);
          const grad = g.arraySync() as number[][];
          const h = 1e-6;
          for (let b = 0; b < 3; b++) {
            for (let k = 0; k < 4; k++) {
              const plus = c.logp.map((r) => [...r]);
              const minus = c.logp.map((r) => [...r]);
              plus[b][k] += h;
              minus[b][k] -= h;
              const fd = (refLoss({ ...rc, logp: plus }, c.logp, opts) - refLoss({ ...rc, logp: minus }, c.logp, opts)) / (2 * h);
              expect(Math.abs(grad[b][k] - fd)).toBeLessThan(2e-5 + 1e-4 * Math.abs(fd));
            }
          }
          tf.dispose([logp, g, ...(Object.values(t).filter((x) => x instanceof tf.Tensor) as tf.Tensor[])]);
        });
      }
    }
  }

  it("does not leak tensors (every option on)", () => {
    const c = randomCase(new Rng(5), 2, 3);
    const ts = [c.logp, c.old!, c.ref!, c.mask, c.entropy!, c.isr!].map((x) => tf.tensor2d(x));
    const run = () => {
      grpoLoss(
        { logp: ts[0], oldLogp: ts[1], refLogp: ts[2], mask: ts[3], entropy: ts[4], importanceSamplingRatio: ts[5], advantages: c.adv },
        { beta: 0.04, epsilonLow: 0.2, epsilonHigh: 0.28, delta: 2, topEntropyQuantile: 0.5, lossType: "dapo", importanceSamplingLevel: "sequence" },
      ).dispose();
    };
    run();
    const n = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) run();
    expect(tf.memory().numTensors).toBe(n);
    tf.dispose(ts);
  });
});
