import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { VocabChunks, vocabChunkRows } from "./vocab_chunks";

describe("VocabChunks (a vocabulary matrix in row chunks)", () => {
  it("gather, logits and weightedSum equal the dense matrix's, for uneven chunks; no tensor leaks", async () => {
    await initBackend();
    const V = 23;
    const H = 5;
    const rng = new Rng(1);
    const data = Float32Array.from({ length: V * H }, () => rng.normal());
    const W = tf.tensor2d(data, [V, H]);
    const chunks = VocabChunks.fromHost(data, [V, H], vocabChunkRows(H, 7 * H * 4)); // 7 rows: 7 + 7 + 7 + 2
    expect(chunks.chunks.map((c) => c.shape[0])).toEqual([7, 7, 7, 2]);
    expect([chunks.rows, chunks.cols]).toEqual([V, H]);
    const ids = tf.tensor1d([0, 6, 7, 22, 13, 21, 0], "int32");
    const h = tf.tensor2d(Float32Array.from({ length: 4 * H }, () => rng.normal()), [4, H]);
    const p = tf.softmax(tf.tensor2d(Float32Array.from({ length: 4 * V }, () => rng.normal()), [4, V]));
    const n0 = tf.memory().numTensors;
    const pairs: [tf.Tensor, tf.Tensor][] = [
      [chunks.gather(ids), tf.gather(W, ids)],
      [chunks.logits(h), tf.matMul(h, W, false, true)],
      [chunks.weightedSum(p as tf.Tensor2D), tf.matMul(p, W)],
    ];
    for (const [a, b] of pairs) {
      expect(a.shape).toEqual(b.shape);
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
      const d = (await diff.data())[0];
      diff.dispose();
      expect(d).toBeLessThan(1e-5);
    }
    tf.dispose(pairs.flat());
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([W, ids, h, p]);
    chunks.dispose();
  });
});
