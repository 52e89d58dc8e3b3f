/**
 * A [V, H] vocabulary matrix (token embedding / lm_head) held as row chunks, each small enough for one GPU storage
 * binding. WebGPU binds every kernel input whole, and an adapter's maxStorageBufferBindingSize is often 128 MiB
 * (mesa's software adapter) to 2-4 GiB, while Qwen2-VL-2B's tied 151936 x 1536 float32 embedding is 0.93 GB. So on
 * webgpu, when V·H·4 bytes exceed the limit, the loader uploads the matrix as chunks of at most that many bytes, and
 * the embedding gather and the lm_head products run per chunk. Frozen: no gradient flows to the chunks.
 */
import * as tf from "@tensorflow/tfjs-core";

/** Rows per chunk so one chunk [rows, H] float32 stays within `limitBytes`. */
export function vocabChunkRows(H: number, limitBytes: number): number {
  return Math.max(1, Math.floor(limitBytes / (H * 4)));
}

export class VocabChunks {
  /** First row of each chunk. */
  readonly starts: number[];
  readonly rows: number;
  readonly cols: number;

  constructor(readonly chunks: tf.Tensor2D[]) {
    if (chunks.length === 0) throw new RangeError("VocabChunks: no chunks");
    this.cols = chunks[0].shape[1];
    this.starts = [];
    let r = 0;
    for (const c of chunks) {
      this.starts.push(r);
      r += c.shape[0];
    }
    this.rows = r;
  }

  /** Uploads a host [V, H] matrix as chunks of at most `rowsPerChunk` rows. */
  static fromHost(data: Float32Array, shape: [number, number], rowsPerChunk: number): VocabChunks {
    const [V, H] = shape;
    const chunks: tf.Tensor2D[] = [];
    for (let r = 0; r < V; r += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, V - r);
      chunks.push(tf.tensor2d(data.subarray(r * H, (r + n) * H), [n, H]));
    }
    return new VocabChunks(chunks);
  }

  /** Rows `ids` [N] -> [N, H]: per chunk, a gather at the clamped local ids, masked to the ids the chunk holds. */
  gather(ids: tf.Tensor1D): tf.Tensor2D {
    return tf.tidy(() => {
      if (this.chunks.length === 1) return tf.gather(this.chunks[0], ids);
      let out: tf.Tensor2D | null = null;
      this.chunks.forEach((c, i) => {
        const n = c.shape[0];
        const local = tf.sub(ids, tf.scalar(this.starts[i], "int32"));
        const inside = tf.logicalAnd(tf.greaterEqual(local, 0), tf.less(local, n));
        // (clipByValue is not used: on wasm it does not clamp int32.)
        const clamped = tf.minimum(tf.maximum(local, tf.scalar(0, "int32")), tf.scalar(n - 1, "int32")) as tf.Tensor1D;
        const rows = tf.gather(c, clamped);
        const part = tf.mul(rows, tf.expandDims(tf.cast(inside, "float32"), 1)) as tf.Tensor2D;
        out = out ? (tf.add(out, part) as tf.Tensor2D) : part;
      });
      return out as unknown as tf.Tensor2D;
    });
  }

  /** Logits h [N, H] x Wᵀ per chunk: [N, rows of chunk i] with the chunk's first vocabulary index. */
  chunkLogits(h: tf.Tensor2D): Array<[tf.Tensor2D, number]> {
    return this.chunks.map((c, i) => [tf.matMul(h, c, false, true), this.starts[i]]);
  }

  /** Logits h [N, H] x Wᵀ -> [N, V] (the caller keeps N·V·4 bytes within the binding limit). */
  logits(h: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const parts = this.chunkLogits(h).map(([l]) => l);
      return (parts.length === 1 ? parts[0] : tf.concat(parts, 1)) as tf.Tensor2D;
    });
  }

  /** p [N, V] x W -> [N, H] (e.g. the expected embedding under softmax probabilities). */
  weightedSum(p: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const N = p.shape[0];
      let out: tf.Tensor2D | null = null;
      this.chunks.forEach((c, i) => {
        const pc = this.chunks.length === 1 ? p : tf.slice(p, [0, this.starts[i]], [N, c.shape[0]]);
        const part = tf.matMul(pc, c) as tf.Tensor2D;
        out = out ? (tf.add(out, part) as tf.Tensor2D) : part;
      });
      return out as unknown as tf.Tensor2D;
    });
  }

  dispose(): void {
    tf.dispose(this.chunks);
  }
}
