/**
 * The lm_head for decode steps, as `h [R, H] @ Wᵀ` with a transposed copy of the weight, [H, V], made once per model.
 *
 * Measured on wasm (XNNPACK, 1 thread; bench/RESULTS-generation.md): for V = 151 936 and one or a few rows,
 * `matMul(h, Wt)` with Wt [H, V] is 4-5x faster than the model's `(W · hᵀ)ᵀ` (which runs the FC kernel with 1-8
 * output channels) and 20x faster than `matMul(h, W, false, true)`. The copy costs V·H·4 bytes (39 MB on the tiny
 * fixture, 311 MB on the bench config, 933 MB for Qwen2-VL-2B); pass `transposedLmHead: false` to generate() to
 * avoid it.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { VocabChunks } from "../nn/vocab_chunks";
import type { Qwen2VLForConditionalGeneration } from "../qwen2_vl/model";

const cache = new WeakMap<object, { src: tf.Tensor2D; wt: tf.Tensor2D }>();

/**
 * Whether the lm_head weight lives in host memory (loadQwen2VL's weightResidency "host"): then there is no device
 * [V, H] tensor and the model's own chunked `lmHead` must be used.
 */
export function lmHeadOnHost(model: Qwen2VLForConditionalGeneration): boolean {
  const w = model.model.weights;
  return !!(w.lmHeadHost || (!w.lmHead && w.embedTokensHost));
}

/** The lm_head as vocabulary row chunks (webgpu, when it exceeds one storage binding), else null. */
export function lmHeadChunks(model: Qwen2VLForConditionalGeneration): VocabChunks | null {
  return model.model.vocabChunks();
}

/**
 * The lm_head weight [V, H] (embed_tokens when tied). Throws when it is host-resident (see {@link lmHeadOnHost}) or
 * held in vocabulary chunks (see {@link lmHeadChunks}).
 */
export function lmHeadWeight(model: Qwen2VLForConditionalGeneration): tf.Tensor2D {
  if (lmHeadOnHost(model)) throw new Error("lmHeadWeight: the lm_head weight is host-resident (weightResidency \"host\"); use model.model.lmHead");
  if (lmHeadChunks(model)) throw new Error("lmHeadWeight: the lm_head is held in vocabulary chunks (larger than one GPU binding); use lmHeadChunks(model)");
  const w = model.model.weights;
  return w.lmHead ?? w.embedTokens;
}

/** The cached [H, V] copy of the lm_head weight (rebuilt when the weight tensor was replaced or disposed). */
export function transposedLmHead(model: Qwen2VLForConditionalGeneration): tf.Tensor2D {
  const src = lmHeadWeight(model);
  const hit = cache.get(model);
  if (hit && hit.src === src && !hit.src.isDisposed && !hit.wt.isDisposed) return hit.wt;
  if (hit) hit.wt.dispose();
  const wt = tf.tidy(() => tf.transpose(src)) as tf.Tensor2D;
  tf.keep(wt);
  cache.set(model, { src, wt });
  return wt;
}

/**
 * The lm_head as `tokenLogprobs` takes it: its vocabulary chunks, or the [V, H] weight with its cached
 * transposed copy (none with `transposed` false). Throws for a host-resident head (see {@link lmHeadOnHost}).
 */
export function logprobHead(model: Qwen2VLForConditionalGeneration, transposed = true): { weight: tf.Tensor2D | VocabChunks; weightT?: tf.Tensor2D } {
  const chunks = lmHeadChunks(model);
  if (chunks) return { weight: chunks };
  return { weight: lmHeadWeight(model), weightT: transposed ? transposedLmHead(model) : undefined };
}

/** Frees the transposed copy made by {@link transposedLmHead}, if any. */
export function releaseTransposedLmHead(model: Qwen2VLForConditionalGeneration): void {
  const hit = cache.get(model);
  if (hit) {
    hit.wt.dispose();
    cache.delete(model);
  }
}

/** Logits [R, V] of final hidden states h [R, H] (host-resident weights: the model's chunked lm_head). */
export function headLogits(model: Qwen2VLForConditionalGeneration, h: tf.Tensor2D, transposed: boolean): tf.Tensor2D {
  const chunks = lmHeadChunks(model);
  if (chunks) return chunks.logits(h);
  if (lmHeadOnHost(model)) {
    return tf.tidy(() => {
      const [R, H] = h.shape;
      const l = model.model.lmHead(tf.reshape(h, [R, 1, H]) as tf.Tensor3D);
      return tf.reshape(l, [R, l.shape[2]]) as tf.Tensor2D;
    });
  }
  if (transposed) return tf.matMul(h, transposedLmHead(model));
  return tf.tidy(() => tf.transpose(tf.matMul(lmHeadWeight(model), tf.transpose(h)))) as tf.Tensor2D;
}
