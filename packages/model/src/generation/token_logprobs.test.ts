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
});
