import { initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { GrpoInputError } from "../errors";
import { aggregateLoss, completionMask, grpoLoss, grpoMetrics, perTokenKl } from "./loss";

beforeAll(async () => {
  await initBackend();
});

// Hand-worked batch: B = 2, T = 2, ε = 0.2.
// Row 0: A = +1, ratios [1.5, 1]   -> min(1.5, 1.2) = 1.2 and 1   -> per-token loss [-1.2, -1]
// Row 1: A = -1, ratios [0.5, 1]   -> min(-0.5, -0.8) = -0.8, -1  -> per-token loss [0.8, 1]; mask [1, 0]
function batch() {
  const old = tf.tensor2d([
    [-1, -2],
    [-1, -0.5],
  ]);
  const logp = tf.tensor2d([
    [-1 + Math.log(1.5), -2],
    [-1 + Math.log(0.5), -0.5],
  ]);
  const mask = tf.tensor2d([
    [1, 1],
    [1, 0],
  ]);
  return { old, logp, mask, advantages: [1, -1] };
}

describe("grpoLoss (hand-worked)", () => {
  it("grpo / bnpo / dr_grpo aggregations", () => {
    const b = batch();
    const inp = { logp: b.logp, oldLogp: b.old, mask: b.mask, advantages: b.advantages };
    const val = (lossType: "grpo" | "bnpo" | "dr_grpo") =>
      grpoLoss(inp, { beta: 0, epsilonLow: 0.2, lossType, maxCompletionLength: 4 }).arraySync() as number;
    // grpo: mean(( -1.2 - 1) / 2, 0.8 / 1) = mean(-1.1, 0.8) = -0.15
    expect(val("grpo")).toBeCloseTo(-0.15, 5);
    // bnpo: (-1.2 - 1 + 0.8) / 3
    expect(val("bnpo")).toBeCloseTo(-1.4 / 3, 5);
    // dr_grpo: -1.4 / (B * L) = -1.4 / 8
    expect(val("dr_grpo")).toBeCloseTo(-0.175, 5);
    tf.dispose(Object.values(b).filter((x) => x instanceof tf.Tensor) as tf.Tensor[]);
  });

  it("row chunks with batch totals sum to the whole batch's loss (exact accumulation over rows)", () => {
    const b = batch();
    for (const lossType of ["grpo", "bnpo", "dr_grpo"] as const) {
      const opts = { beta: 0, epsilonLow: 0.2, lossType, maxCompletionLength: 4 };
      const whole = grpoLoss({ logp: b.logp, oldLogp: b.old, mask: b.mask, advantages: b.advantages }, opts).arraySync() as number;
      const row = (i: number) => {
        const sl = (t: tf.Tensor2D) => tf.slice(t, [i, 0], [1, 2]) as tf.Tensor2D;
        return grpoLoss({ logp: sl(b.logp), oldLogp: sl(b.old), mask: sl(b.mask), advantages: [b.advantages[i]] }, { ...opts, totals: { sequences: 2, tokens: 3 } }).arraySync() as number;
      };
      expect(row(0) + row(1)).toBeCloseTo(whole, 6);
    }
    tf.dispose([b.logp, b.old, b.mask]);
  });

  it("adds β·k3 KL: exp(d) − d − 1 with d = ref − logp", () => {
    const b = batch();
    // d = ln 2 on row 0 token 0 -> KL = 2 - ln 2 - 1 = 0.306853; elsewhere d = 0 -> 0.
    const ref = tf.tidy(() => tf.add(b.logp, tf.tensor2d([[Math.log(2), 0], [0, 0]])) as tf.Tensor2D);
    const inp = { logp: b.logp, oldLogp: b.old, refLogp: ref, mask: b.mask, advantages: b.advantages };
    const loss = grpoLoss(inp, { beta: 0.1, epsilonLow: 0.2, lossType: "grpo" }).arraySync() as number;
    const kl = 2 - Math.log(2) - 1;
    expect(loss).toBeCloseTo(((-1.2 + 0.1 * kl - 1) / 2 + 0.8) / 2, 5);
    const m = grpoMetrics(inp, { epsilonLow: 0.2 });
    expect(m.klMean).toBeCloseTo(kl / 3, 5);
    expect(m.clipLow).toBeCloseTo(1 / 3, 6);
    expect(m.clipHigh).toBeCloseTo(1 / 3, 6);
    expect(m.clipRegion).toBeCloseTo(2 / 3, 6);
    expect(m.ratioMean).toBeCloseTo((1.5 + 1 + 0.5) / 3, 5);
    tf.dispose([b.logp, b.old, b.mask, ref]);
  });

  it("ε_high widens only the upper clip", () => {
    const b = batch();
    const inp = { logp: b.logp, oldLogp: b.old, mask: b.mask, advantages: b.advantages };
    // ε_high = 0.6: row 0 token 0 now min(1.5, 1.5) = 1.5 -> grpo = mean((-1.5 - 1)/2, 0.8) = -0.225
    const loss = grpoLoss(inp, { beta: 0, epsilonLow: 0.2, epsilonHigh: 0.6, lossType: "grpo" }).arraySync() as number;
    expect(loss).toBeCloseTo(-0.225, 5);
    expect(grpoMetrics(inp, { epsilonLow: 0.2, epsilonHigh: 0.6 }).clipHigh).toBe(0);
    tf.dispose([b.logp, b.old, b.mask]);
  });

  it("policy == reference == old: KL = 0, ratio = 1, no clipping", () => {
    const logp = tf.tensor2d([
      [-0.3, -2.1, -0.7],
      [-1.2, -0.01, -4],
    ]);
    const mask = tf.ones([2, 3]) as tf.Tensor2D;
    const inp = { logp, oldLogp: logp, refLogp: logp, mask, advantages: [0.7, -0.7] };
    const m = grpoMetrics(inp, { epsilonLow: 0.2 });
    expect(m.klMean).toBe(0);
    expect(m.ratioMean).toBe(1);
    expect(m.clipRegion).toBe(0);
    const kl = perTokenKl(logp, logp);
    expect(Array.from(kl.dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    // Loss = -mean(A) = 0 for symmetric advantages.
    expect(grpoLoss(inp, { beta: 0.04, epsilonLow: 0.2, lossType: "grpo" }).arraySync()).toBeCloseTo(0, 6);
    tf.dispose([logp, mask, kl]);
  });

  it("gradient: μ = 1 (old = detached current) gives d/dlogp = −A / (tokens_i · B); clipped tokens get 0", () => {
    const b = batch();
    const g1 = tf.grad((x: tf.Tensor) => grpoLoss({ logp: x as tf.Tensor2D, mask: b.mask, advantages: b.advantages }, { beta: 0, epsilonLow: 0.2, lossType: "grpo" }));
    const d = g1(b.logp).arraySync() as number[][];
    expect(d[0][0]).toBeCloseTo(-1 / 4, 6);
    expect(d[0][1]).toBeCloseTo(-1 / 4, 6);
    expect(d[1][0]).toBeCloseTo(1 / 2, 6);
    expect(d[1][1]).toBe(0);
    // With the hand-worked old log-probs, row 0 token 0 (ratio 1.5 > 1.2, A > 0) and row 1 token 0
    // (ratio 0.5 < 0.8, A < 0) are clipped: zero gradient. Row 0 token 1: -A·ratio/(2·2) = -0.25.
    const g2 = tf.grad((x: tf.Tensor) => grpoLoss({ logp: x as tf.Tensor2D, oldLogp: b.old, mask: b.mask, advantages: b.advantages }, { beta: 0, epsilonLow: 0.2, lossType: "grpo" }));
    const d2 = g2(b.logp).arraySync() as number[][];
    expect(d2[0][0]).toBe(0);
    expect(d2[1][0]).toBe(0);
    expect(d2[0][1]).toBeCloseTo(-0.25, 6);
    tf.dispose([b.logp, b.old, b.mask]);
  });

  it("rejects mismatched shapes and β > 0 without a reference", () => {
    const b = batch();
    expect(() => grpoLoss({ logp: b.logp, mask: tf.ones([2, 3]) as tf.Tensor2D, advantages: [1, 1] }, { beta: 0, epsilonLow: 0.2, lossType: "grpo" })).toThrow(/mask has shape \[2,3\]/);
    expect(() => grpoLoss({ logp: b.logp, mask: b.mask, advantages: [1] }, { beta: 0, epsilonLow: 0.2, lossType: "grpo" })).toThrow(GrpoInputError);
    expect(() => grpoLoss({ logp: b.logp, mask: b.mask, advantages: [1, 1] }, { beta: 0.1, epsilonLow: 0.2, lossType: "grpo" })).toThrow(/refLogp/);
    expect(() => aggregateLoss(b.logp, b.mask, "dr_grpo")).toThrow(/maxCompletionLength/);
  });

  it("does not leak tensors", () => {
    const b = batch();
    const run = () => {
      const l = grpoLoss({ logp: b.logp, oldLogp: b.old, refLogp: b.logp, mask: b.mask, advantages: b.advantages }, { beta: 0.04, epsilonLow: 0.2, lossType: "bnpo" });
      l.dispose();
      grpoMetrics({ logp: b.logp, oldLogp: b.old, refLogp: b.logp, mask: b.mask, advantages: b.advantages }, { epsilonLow: 0.2 });
    };
    run();
    const n = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) run();
    expect(tf.memory().numTensors).toBe(n);
  });
});

describe("completionMask", () => {
  it("marks the first length tokens and can drop truncated rows", () => {
    expect(Array.from(completionMask([2, 3, 0], 3))).toEqual([1, 1, 0, 1, 1, 1, 0, 0, 0]);
    expect(Array.from(completionMask([2, 3], 3, [false, true], true))).toEqual([1, 1, 0, 0, 0, 0]);
    expect(() => completionMask([4], 3)).toThrow(/length 4/);
  });
});
