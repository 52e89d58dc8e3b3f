/**
 * What generation and log-prob code needs from the model, as structural types (the Qwen2-VL model of
 * ../qwen2_vl satisfies them). Keeping them structural lets the generation tests and benches use the real
 * model without a circular import.
 */
import type * as tf from "@tensorflow/tfjs-core";

/** One prompt, already tokenized (ids after `<|image_pad|>` expansion, no padding). */
export interface TokenizedPrompt {
  /** Prompt token ids. */
  inputIds: number[];
  /** Row-major [N, 1176] patches of this prompt's images, in order (absent or empty: no image). */
  pixelValues?: Float32Array;
  /** [numImages][3] (t, h, w) grid of each image, in patches. Required when pixelValues is given. */
  imageGridThw?: number[][];
}

/** Minimal view of the model's KV cache. */
export interface KVCacheLike {
  /** Number of cached positions (padded prompt + decoded tokens). */
  readonly length: number;
  dispose(): void;
}

/** Arguments of the model's forward pass (the subset generation uses). */
export interface ForwardArgs<C extends KVCacheLike = KVCacheLike> {
  inputIds: tf.Tensor2D;
  attentionMask?: tf.Tensor2D;
  pixelValues?: tf.Tensor2D;
  imageGridThw?: number[][];
  pastKeyValues?: C;
  useCache?: boolean;
  outputHiddenStates?: boolean;
  logitsToKeep?: number;
}

/** Output of the model's forward pass (the subset generation uses). */
export interface ForwardOutput<C extends KVCacheLike = KVCacheLike> {
  logits: tf.Tensor3D;
  hiddenStates?: tf.Tensor3D[];
  pastKeyValues?: C;
  ropeDeltas: number[];
}
