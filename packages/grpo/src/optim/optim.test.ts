import { initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { AdamW, clipByGlobalNorm, clipByGlobalNormAsync, GradAccumulator } from "./adamw";
import { learningRateAt, warmupStepsFrom } from "./schedule";

beforeAll(async () => {
  await initBackend();
});

/** Reference AdamW in float64, straight from the torch docs' algorithm box. */
function refAdamW(p0: number[], grads: number[][], lrs: number[], b1: number, b2: number, eps: number, wd: number): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    const lr = lrs[k];
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const mh = m[i] / (1 - b1 ** t);
      const vh = v[i] / (1 - b2 ** t);
      p[i] -= (lr * mh) / (Math.sqrt(vh) + eps);
    }
  });
  return p;
}

describe("AdamW", () => {
  const grads = [
    [0.5, -1, 2, 0],
    [0.1, -0.2, 1.5, 3],
    [-0.4, 0.9, -2, 0.01],
    [1, 1, 1, 1],
    [0.3, -0.7, 0.2, -5],
  ];
  const lrs = [0.1, 0.05, 0.02, 0.01, 0.01];

  it("matches the reference algorithm (decoupled weight decay, bias correction)", () => {
    const p0 = [1, -2, 0.5, 3];
    const v = tf.variable(tf.tensor1d(p0), true, "w");
    const opt = new AdamW([v], { beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 });
    grads.forEach((g, k) => {
      const gt = tf.tensor1d(g);
      opt.step([gt], lrs[k]);
      gt.dispose();
    });
    const want = refAdamW(p0, grads, lrs, 0.8, 0.95, 1e-6, 0.1);
    const got = Array.from(v.dataSync());
    for (let i = 0; i < 4; i++) expect(got[i]).toBeCloseTo(want[i], 5);
    // First step of Adam moves each (non-zero-grad) weight by ~lr·sign(g): check the hand value.
    const v2 = tf.variable(tf.tensor1d([1]), true, "w2");
    const o2 = new AdamW([v2]);
    const g2 = tf.tensor1d([0.3]);
    o2.step([g2], 0.1);
    expect(v2.dataSync()[0]).toBeCloseTo(1 - 0.1 * (0.3 / (0.3 + 1e-8)), 6);
    tf.dispose([v, v2, g2]);
    opt.dispose();
    o2.dispose();
  });

  it("state save/restore continues bit for bit", () => {
    const run = (restoreAt: number | null) => {
      let v = tf.variable(tf.tensor1d([1, -2, 0.5, 3]), true, "w");
      let opt = new AdamW([v], { weightDecay: 0.01 });
      for (let k = 0; k < grads.length; k++) {
        if (restoreAt === k) {
          const st = opt.getState();
          const pv = v.dataSync().slice();
          opt.dispose();
          v.dispose();
          // A fresh variable and optimiser, restored from plain Float32Arrays.
          v = tf.variable(tf.tensor1d(pv), true, "w");
          opt = new AdamW([v], { weightDecay: 0.01 });
          opt.setState({ step: st.step, m: { w: new Float32Array(st.m.w) }, v: { w: new Float32Array(st.v.w) } });
        }
        const g = tf.tensor1d(grads[k]);
        opt.step([g], lrs[k]);
        g.dispose();
      }
      const out = Array.from(v.dataSync());
      expect(opt.stepCount).toBe(grads.length);
      opt.dispose();
      v.dispose();
      return out;
    };
    expect(run(3)).toEqual(run(null));
  });

  it("rejects bad state and bad hyper-parameters", () => {
    const v = tf.variable(tf.zeros([3]), true, "x");
    const opt = new AdamW([v]);
    expect(() => opt.setState({ step: 1, m: { x: new Float32Array(2) }, v: { x: new Float32Array(3) } })).toThrow(/m for "x" has 2 values, expected 3/);
    expect(() => opt.setState({ step: 1, m: {}, v: {} })).toThrow(/no m for variable "x"/);
    expect(() => new AdamW([v], { beta1: 1 })).toThrow(/beta1/);
    opt.dispose();
    v.dispose();
  });

  it("keeps numTensors flat", () => {
    const v = tf.variable(tf.ones([2, 2]), true, "y");
    const opt = new AdamW([v], { weightDecay: 0.1 });
    const stepOnce = () => {
      const g = tf.ones([2, 2]);
      opt.step([g], 0.01);
      g.dispose();
    };
    stepOnce();
    const n = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) stepOnce();
    expect(tf.memory().numTensors).toBe(n);
    opt.dispose();
    v.dispose();
  });
});

describe("clipByGlobalNorm and accumulation", () => {
  it("scales by maxNorm/(norm+1e-6) only above maxNorm (hand-worked: norm of [3,4] and [12] is 13)", () => {
    const { grads, norm } = clipByGlobalNorm([tf.tensor1d([3, 4]), tf.tensor1d([12])], 1);
    expect(norm).toBeCloseTo(13, 5);
    const c = 1 / (13 + 1e-6);
    expect(grads[0].dataSync()[0]).toBeCloseTo(3 * c, 6);
    expect(grads[1].dataSync()[0]).toBeCloseTo(12 * c, 6);
    tf.dispose(grads);
    const small = clipByGlobalNorm([tf.tensor1d([0.3, 0.4])], 1);
    expect(small.norm).toBeCloseTo(0.5, 6);
    expect(Array.from(small.grads[0].dataSync())).toEqual([Math.fround(0.3), Math.fround(0.4)]);
    tf.dispose(small.grads);
  });

  it("clipByGlobalNormAsync (the trainer's) reads the norm asynchronously and clips the same", async () => {
    const { grads, norm } = await clipByGlobalNormAsync([tf.tensor1d([3, 4]), tf.tensor1d([12])], 1);
    expect(norm).toBeCloseTo(13, 5);
    const c = 1 / (13 + 1e-6);
    expect(grads[0].dataSync()[1]).toBeCloseTo(4 * c, 6);
    expect(grads[1].dataSync()[0]).toBeCloseTo(12 * c, 6);
    tf.dispose(grads);
    const off = await clipByGlobalNormAsync([tf.tensor1d([3, 4])], 0);
    expect(off.norm).toBeCloseTo(5, 6);
    expect(Array.from(off.grads[0].dataSync())).toEqual([3, 4]);
    tf.dispose(off.grads);
  });

  it("GradAccumulator averages micro-batch gradients", () => {
    const acc = new GradAccumulator();
    acc.add([tf.tensor1d([1, 2])]);
    acc.add([tf.tensor1d([3, 6])]);
    const [g] = acc.mean();
    expect(Array.from(g.dataSync())).toEqual([2, 4]);
    g.dispose();
    expect(() => acc.mean()).toThrow(/before any add/);
  });
});

describe("learningRateAt", () => {
  const base = { learningRate: 1, totalSteps: 10, warmupSteps: 2 };
  it("warms up linearly from 0, then decays linearly to 0 (hand values)", () => {
    const o = { ...base, type: "linear" as const };
    expect([0, 1, 2, 6, 10, 12].map((s) => learningRateAt(s, o))).toEqual([0, 0.5, 1, 0.5, 0, 0]);
  });
  it("cosine: half a cycle after warmup", () => {
    const o = { ...base, type: "cosine" as const };
    expect(learningRateAt(2, o)).toBeCloseTo(1, 12);
    expect(learningRateAt(6, o)).toBeCloseTo(0.5, 12);
    expect(learningRateAt(4, o)).toBeCloseTo(0.5 * (1 + Math.cos(Math.PI / 4)), 12);
    expect(learningRateAt(10, o)).toBeCloseTo(0, 12);
  });
  it("constant after warmup; warmup steps from ratio", () => {
    expect(learningRateAt(7, { ...base, type: "constant" })).toBe(1);
    expect(warmupStepsFrom(100, 0.05)).toBe(5);
    expect(warmupStepsFrom(100, 0.05, 3)).toBe(3);
    expect(() => learningRateAt(3, { ...base, type: "step" as never })).toThrow(/unknown lrScheduler/);
  });
});
