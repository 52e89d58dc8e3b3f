import { initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { frozenGather, Linear, setAdaptersEnabled } from "./linear";
import { bmm, geluErf, layerNorm, quickGelu, rmsNorm, silu } from "./ops";

beforeAll(async () => {
  await initBackend();
});

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i]), `index ${i}: ${a[i]} vs ${b[i]}`).toBeLessThan(tol);
};

describe("activations and norms (typical bugs: tanh GELU in the merger, rms eps 1e-5 vs 1e-6)", () => {
  it("geluErf is the exact erf GELU, not the tanh approximation", () => {
    const x = tf.tensor1d([-2, -0.5, 0, 1, 3]);
    // 0.5·x·(1 + erf(x/√2)), reference values from the closed form
    const want = [-0.04550026, -0.15426877, 0, 0.84134475, 2.99595031];
    close(geluErf(x).dataSync(), want, 2e-6);
    const tanhApprox = 0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (1 + 0.044715))); // at x = 1
    expect(Math.abs(geluErf(tf.scalar(1)).dataSync()[0] - tanhApprox)).toBeGreaterThan(1e-4);
  });
  it("quickGelu = x·sigmoid(1.702x), silu = x·sigmoid(x)", () => {
    const xs = [-3, -1, 0, 0.5, 2];
    close(quickGelu(tf.tensor1d(xs)).dataSync(), xs.map((x) => x / (1 + Math.exp(-1.702 * x))));
    close(silu(tf.tensor1d(xs)).dataSync(), xs.map((x) => x / (1 + Math.exp(-x))));
  });
  it("rmsNorm uses the given eps and the weight; small inputs expose a wrong eps", () => {
    const v = [0.001, -0.002, 0.003, 0.0005];
    const w = [1, 2, 0.5, 1.5];
    const ms = v.reduce((a, b) => a + b * b, 0) / v.length;
    const want = v.map((x, i) => (w[i] * x) / Math.sqrt(ms + 1e-6));
    const got = rmsNorm(tf.tensor2d([v]), tf.tensor1d(w), 1e-6).dataSync();
    close(got, want, 1e-5);
    const wrong = rmsNorm(tf.tensor2d([v]), tf.tensor1d(w), 1e-5).dataSync();
    expect(Math.abs(wrong[1] - want[1])).toBeGreaterThan(1e-2);
  });
  it("layerNorm: biased variance, weight and bias", () => {
    const v = [1, 2, 4, 7];
    const mean = 3.5;
    const varb = v.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
    const want = v.map((x, i) => ((x - mean) / Math.sqrt(varb + 1e-6)) * (i + 1) + 0.1 * i);
    close(layerNorm(tf.tensor2d([v]), tf.tensor1d([1, 2, 3, 4]), tf.tensor1d([0, 0.1, 0.2, 0.3]), 1e-6).dataSync(), want, 1e-5);
  });
});

describe("Linear", () => {
  const W = tf.tensor2d([
    [1, 2, 3],
    [4, 5, 6],
  ]); // [out 2, in 3]
  const b = tf.tensor1d([0.5, -1]);
  it("y = x Wᵀ + b on any leading shape", () => {
    const l = new Linear(W.clone(), b.clone());
    const x = tf.tensor3d([[[1, 0, -1]], [[2, 1, 0]]]); // [2,1,3]
    const y = l.apply(x);
    expect(y.shape).toEqual([2, 1, 2]);
    close(y.dataSync(), [1 - 3 + 0.5, 4 - 6 - 1, 2 + 2 + 0.5, 8 + 5 - 1]);
  });
  it("LoRA slot adds scale·(x Aᵀ) Bᵀ only while adapters are enabled; a host-resident weight gives the same result", () => {
    const l = new Linear(W.clone(), null);
    const A = tf.variable(tf.tensor2d([[1, 0, 1]])); // [r 1, in 3]
    const B = tf.variable(tf.tensor2d([[2], [-1]])); // [out 2, r 1]
    l.lora = { A, B, scale: 0.5, dropout: 0 };
    const x = tf.tensor2d([[1, 2, 3]]);
    // base: [14, 32]; x·Aᵀ = 4; ·Bᵀ = [8, -4]; ·0.5 = [4, -2]
    close(l.apply(x).dataSync(), [18, 30]);
    setAdaptersEnabled(false);
    try {
      close(l.apply(x).dataSync(), [14, 32]);
    } finally {
      setAdaptersEnabled(true);
    }
    const h = Linear.fromHost({ data: W.dataSync() as Float32Array, shape: [2, 3] });
    h.lora = l.lora;
    expect(h.residency).toBe("host");
    close(h.apply(x).dataSync(), [18, 30]);
    const before = tf.memory().numTensors;
    h.apply(x).dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
  it("under a gradient tape a frozen weight gets no gradient and no copy; dx equals plain autodiff's; a trainable Variable weight still trains", () => {
    const W = tf.randomNormal([256, 128], 0, 1, "float32", 3) as tf.Tensor2D;
    const bias = tf.randomNormal([256], 0, 1, "float32", 4) as tf.Tensor1D;
    const x = tf.variable(tf.randomNormal([3, 128], 0, 1, "float32", 5), true);
    const A = tf.variable(tf.randomNormal([4, 128], 0, 0.1, "float32", 6), true);
    const B = tf.variable(tf.randomNormal([256, 4], 0, 0.1, "float32", 7), true);
    const loss = (y: tf.Tensor) => tf.sum(tf.mul(y, y)) as tf.Scalar;
    const ref = (w: tf.Tensor2D) => tf.add(tf.add(tf.matMul(x, w, false, true), tf.matMul(tf.matMul(x, A, false, true), B, false, true)), bias);
    const want = tf.variableGrads(() => loss(ref(W)), [x, A, B]);
    const lin = new Linear(W, bias);
    lin.lora = { A, B, scale: 1, dropout: 0 };
    const host = Linear.fromHost({ data: W.dataSync() as Float32Array, shape: [256, 128] }, bias);
    host.lora = lin.lora;
    for (const l of [lin, host]) {
      const before = tf.memory().numBytes;
      let underTape = 0;
      const got = tf.variableGrads(() => {
        const y = l.apply(x);
        underTape = tf.memory().numBytes - before; // the tape's saved tensors are alive here
        return loss(y);
      }, [x, A, B]);
      expect(underTape).toBeLessThan(W.size * 4); // a saved copy of W alone would be 256·128·4 bytes
      for (const k of ["x", "A", "B"] as const) {
        const name = { x: x.name, A: A.name, B: B.name }[k];
        close(got.grads[name].dataSync(), want.grads[name].dataSync(), 1e-3);
      }
      tf.dispose([got.value, ...Object.values(got.grads)]);
    }
    // full fine-tuning: a trainable Variable weight keeps tfjs's own gradient
    const Wv = tf.variable(W.clone(), true);
    const full = new Linear(Wv as unknown as tf.Tensor2D, bias);
    const gW = tf.variableGrads(() => loss(full.apply(x)), [Wv]);
    const wantW = tf.variableGrads(() => loss(tf.add(tf.matMul(x, Wv, false, true), bias)), [Wv]);
    close(gW.grads[Wv.name].dataSync(), wantW.grads[Wv.name].dataSync(), 1e-3);
    // the frozen embedding gather: same values, and a table that is a variable being differentiated still gets its gradient
    const ids = tf.tensor1d([3, 0, 3], "int32");
    close(frozenGather(W, ids).dataSync(), tf.gather(W, ids).dataSync(), 1e-9);
    const gT = tf.variableGrads(() => tf.sum(tf.square(frozenGather(Wv as unknown as tf.Tensor2D, ids))) as tf.Scalar, [Wv]);
    expect(tf.sum(tf.abs(gT.grads[Wv.name])).dataSync()[0]).toBeGreaterThan(0);
    tf.dispose([W, bias, x, A, B, Wv, ids, want.value, ...Object.values(want.grads), gW.value, wantW.value, ...Object.values(gW.grads), ...Object.values(wantW.grads), gT.value, ...Object.values(gT.grads)]);
  });
  it("rejects mismatched shapes", () => {
    expect(() => new Linear(W.clone(), tf.tensor1d([1, 2, 3]))).toThrow(/bias/);
    expect(() => new Linear(W.clone()).apply(tf.tensor2d([[1, 2]]))).toThrow(/in_features 3/);
    expect(() => new Linear(W.clone()).setWeight(tf.zeros([3, 2]) as tf.Tensor2D)).toThrow(/setWeight/);
  });
});

describe("bmm", () => {
  it("batched and per-batch paths agree with tf.matMul", () => {
    for (const [m, k, n] of [
      [3, 4, 5],
      [104, 100, 104], // >= 2^20 multiply-adds per product: the per-batch loop on wasm
    ]) {
      const a = tf.randomNormal([2, 2, m, k], 0, 1, "float32", 1);
      const b = tf.randomNormal([2, 2, k, n], 0, 1, "float32", 2);
      close(bmm(a, b).dataSync(), tf.matMul(a, b).dataSync(), 1e-3);
    }
  });
});
