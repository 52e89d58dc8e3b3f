import { fusedRmsNorm } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";

/**
 * Qwen2RMSNorm: w · x / sqrt(mean(x²) + eps) over the last axis (float32). @rarl/core's fusedRmsNorm: one WGSL
 * kernel on webgpu, the tfjs composite on other backends.
 */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  return fusedRmsNorm(x, weight, eps);
}

/** torch.nn.LayerNorm (biased variance) over the last axis. */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor1D, bias: tf.Tensor1D, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), weight), bias);
  });
}

/** QuickGELU: x · sigmoid(1.702 x). */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

/** Exact GELU: 0.5 · x · (1 + erf(x / √2)) (torch.nn.GELU() default). */
export function geluErf(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** SiLU: x · sigmoid(x). */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/** Activation by Hugging Face name (ACT2FN subset). */
export function activation(name: string): (x: tf.Tensor) => tf.Tensor {
  switch (name) {
    case "quick_gelu":
      return quickGelu;
    case "gelu":
      return geluErf;
    case "silu":
      return silu;
    default:
      throw new Error(`unsupported activation "${name}"`);
  }
}

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
