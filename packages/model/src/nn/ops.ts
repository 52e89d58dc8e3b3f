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

/** Batched matmul (moved to @rarl/core, where the fused attention's composite uses it; re-exported here). */
export { bmm } from "@rarl/core";
