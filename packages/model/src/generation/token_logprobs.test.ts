import { initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { tokenLogprobs } from "./token_logprobs";

beforeAll(async () => {
  await initBackend();
});

/** Plain reference: full logits, log-softmax, gather. */
function reference(h: tf.Tensor2D, w: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor1D {
  const lsm = tf.logSoftmax(tf.matMul(h, w, false, true));
  return tf.sum(tf.mul(lsm, tf.oneHot(ids, w.shape[0])), 1) as tf.Tensor1D;
}

describe("tokenLogprobs (chunked, custom gradient)", () => {
  it("matches log-softmax + gather in value and in gradient, for any chunking", () => {
    tf.tidy(() => {
      const n = 7;
      const hdim = 5;
      const v = 23;
      const h = tf.randomNormal([n, hdim], 0, 1, "float32", 1) as tf.Tensor2D;
      const w = tf.randomNormal([v, hdim], 0, 1, "float32", 2) as tf.Tensor2D;
      const ids = tf.tensor1d([0, 3, 22, 5, 5, 17, 9], "int32");
      const up = tf.randomNormal([n], 0, 1, "float32", 3);
      const refV = reference(h, w, ids).arraySync();
      const refG = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(reference(x as tf.Tensor2D, w, ids), up)))(h).arraySync() as number[][];
      for (const chunk of [1, 3, 7, 100]) {
        for (const wT of [undefined, tf.transpose(w) as tf.Tensor2D]) {
          const val = tokenLogprobs(h, w, ids, chunk, wT).arraySync();
          for (let i = 0; i < n; i++) expect(Math.abs(val[i] - refV[i])).toBeLessThan(1e-5);
          const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tokenLogprobs(x as tf.Tensor2D, w, ids, chunk, wT), up)))(h).arraySync() as number[][];
          for (let i = 0; i < n; i++) for (let j = 0; j < hdim; j++) expect(Math.abs(g[i][j] - refG[i][j])).toBeLessThan(1e-5);
        }
      }
    });
  });

  it("still differentiates when the ids tensor is disposed before the backward pass (ids created inside a tidy)", () => {
    const h = tf.randomNormal([3, 4], 0, 1, "float32", 1) as tf.Tensor2D;
    const w = tf.randomNormal([9, 4], 0, 1, "float32", 2) as tf.Tensor2D;
    const hv = tf.variable(tf.ones([3, 4]), true, "hv_scale2");
    const f = () => tf.tidy(() => tf.sum(tokenLogprobs(tf.mul(h, hv), w, tf.tensor1d([1, 5, 8], "int32"), 2)) as tf.Scalar);
    const { value, grads } = tf.variableGrads(f, [hv]);
    const ref = tf.variableGrads(() => tf.sum(tf.mul(tf.logSoftmax(tf.matMul(tf.mul(h, hv), w, false, true)), tf.oneHot(tf.tensor1d([1, 5, 8], "int32"), 9))) as tf.Scalar, [hv]);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(grads[hv.name], ref.grads[hv.name]))).dataSync()[0])).toBeLessThan(1e-5);
    tf.dispose([value, ref.value, h, w, hv]);
    tf.dispose(grads);
    tf.dispose(ref.grads);
  });

  it("leaks no tensors across calls with a gradient", () => {
    const h = tf.randomNormal([4, 3], 0, 1, "float32", 1) as tf.Tensor2D;
    const w = tf.randomNormal([11, 3], 0, 1, "float32", 2) as tf.Tensor2D;
    const ids = tf.tensor1d([1, 2, 3, 4], "int32");
    const hv = tf.variable(tf.ones([4, 3]), true, "hv_scale");
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) {
      const { value, grads } = tf.variableGrads(() => tf.sum(tokenLogprobs(tf.mul(h, hv), w, ids, 2)) as tf.Scalar, [hv]);
      value.dispose();
      tf.dispose(grads);
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([h, w, ids, hv]);
  });

  it("entropyOut: −Σ p log p of the same softmax, from the same chunk pass, for any chunking; gradient unchanged; no leak", () => {
    const n = 6;
    const h = tf.randomNormal([n, 4], 0, 2, "float32", 7) as tf.Tensor2D;
    const w = tf.randomNormal([13, 4], 0, 1, "float32", 8) as tf.Tensor2D;
    const ids = tf.tensor1d([0, 3, 12, 5, 5, 1], "int32");
    const want = tf.tidy(() => {
      const lsm = tf.logSoftmax(tf.matMul(h, w, false, true));
      return tf.neg(tf.sum(tf.mul(tf.exp(lsm), lsm), 1)).arraySync() as number[];
    });
    for (const chunk of [1, 4, 100]) {
      const out: { entropy?: tf.Tensor1D } = {};
      const lp = tokenLogprobs(h, w, ids, chunk, undefined, out);
      const got = out.entropy!.arraySync();
      for (let i = 0; i < n; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-5);
      expect(Math.max(...got)).toBeLessThanOrEqual(Math.log(13) + 1e-5);
      tf.dispose([lp, out.entropy!]);
    }
    const hv = tf.variable(tf.ones([n, 4]), true, "hv_entropy");
    const run = () => {
      const out: { entropy?: tf.Tensor1D } = {};
      const { value, grads } = tf.variableGrads(() => tf.sum(tokenLogprobs(tf.mul(h, hv), w, ids, 4, undefined, out)) as tf.Scalar, [hv]);
      const plain = tf.variableGrads(() => tf.sum(tokenLogprobs(tf.mul(h, hv), w, ids, 4)) as tf.Scalar, [hv]);
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(grads[hv.name], plain.grads[hv.name]))).dataSync()[0]);
      tf.dispose([value, plain.value, out.entropy!]);
      tf.dispose(grads);
      tf.dispose(plain.grads);
      return diff;
    };
    expect(run()).toBe(0);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([h, w, ids, hv]);
  });
});
