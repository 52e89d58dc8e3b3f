import * as tf from "@tensorflow/tfjs-core";

/**
 * Batched matmul a [..., M, K] · b [..., K, N] (same leading dims, no broadcasting).
 * tfjs-wasm's BatchMatMul with batch > 1 runs ~8x slower than a loop of 2-D matmuls on large products, so on wasm
 * the batch is split into 2-D products when each product has >= 2^20 multiply-adds (prefill); small products
 * (decode) and other backends use one batched matMul. Differentiable either way.
 */
export function bmm(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const lead = a.shape.slice(0, -2);
    const batch = lead.reduce((x, y) => x * y, 1);
    const [m, k] = a.shape.slice(-2);
    const n = b.shape[b.shape.length - 1];
    if (batch === 1) return tf.reshape(tf.matMul(tf.reshape(a, [m, k]), tf.reshape(b, [k, n])), [...lead, m, n]);
    // small products (decode steps) are faster batched: the per-batch loop's op overhead dominates there
    if (tf.getBackend() !== "wasm" || m * k * n < 1 << 20) return tf.matMul(a, b);
    const as = tf.unstack(tf.reshape(a, [batch, m, k]));
    const bs = tf.unstack(tf.reshape(b, [batch, k, n]));
    return tf.reshape(tf.stack(as.map((ai, i) => tf.matMul(ai, bs[i]))), [...lead, m, n]);
  });
}
