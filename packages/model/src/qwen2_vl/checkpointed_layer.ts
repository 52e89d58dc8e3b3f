/**
 * One Qwen2 decoder layer under activation checkpointing (see ../nn/checkpoint.ts), for
 * `Qwen2VLForConditionalGeneration.gradientCheckpointing`: what transformers' `gradient_checkpointing_enable()` does
 * to each `Qwen2VLDecoderLayer` in training.
 */
import * as tf from "@tensorflow/tfjs-core";
import { checkpoint, isRecordingGradients } from "../nn/checkpoint";
import { areAdaptersEnabled, isLoraTraining } from "../nn/linear";
import { type DecoderLayerWeights, type LayerKV, layerLinears, type Qwen2VLTextModel } from "./language";

const trainable = (t: tf.Tensor | null | undefined): t is tf.Variable => t instanceof tf.Variable && t.trainable;

/**
 * Every trainable tf.Variable a decoder layer reads in its forward pass: LoRA A/B of its Linears (while adapters are
 * enabled), and any weight, bias or RMSNorm weight that is a trainable variable (full fine-tuning).
 */
export function decoderLayerVariables(w: DecoderLayerWeights): tf.Variable[] {
  const out: tf.Variable[] = [];
  for (const t of [w.inputLayernorm, w.postAttentionLayernorm]) if (trainable(t)) out.push(t);
  for (const [, lin] of layerLinears(w)) {
    if (lin.residency === "device" && trainable(lin.weight)) out.push(lin.weight);
    if (trainable(lin.bias)) out.push(lin.bias);
    if (lin.lora && areAdaptersEnabled()) {
      if (trainable(lin.lora.A)) out.push(lin.lora.A);
      if (trainable(lin.lora.B)) out.push(lin.lora.B);
    }
  }
  return out;
}

/**
 * `model.layer(i, ...)` checkpointed when a gradient tape is recording: the tape keeps the layer's inputs (h, the
 * past K/V, and the cos/sin/mask tables) instead of every intermediate, and the backward pass recomputes the layer.
 * Same values as `model.layer`; gradients equal within float32 rounding (the recomputation runs the same kernels).
 *
 * Falls back to the plain layer (no checkpoint) when no tape records (inference: the path is unchanged) and while LoRA
 * dropout is active on one of the layer's adapters (its masks are not seeded, so a recomputation would draw others).
 *
 * @param needKV false when the caller drops the layer's K/V (no cache wanted): they are then not kept as outputs.
 */
export function checkpointedDecoderLayer(
  model: Qwen2VLTextModel,
  i: number,
  h: tf.Tensor3D,
  cos: tf.Tensor4D,
  sinSigned: tf.Tensor4D,
  mask: tf.Tensor4D,
  past: LayerKV | null,
  needKV = true,
): { h: tf.Tensor3D; kv: LayerKV } {
  const w = model.weights.layers[i];
  const dropout = isLoraTraining() && layerLinears(w).some(([, l]) => l.lora && l.lora.dropout > 0);
  if (!isRecordingGradients() || dropout) return model.layer(i, h, cos, sinSigned, mask, past);
  const inputs = past ? [h, past.k, past.v] : [h];
  const outs = checkpoint(
    (xs, cs) => {
      const r = model.layer(i, xs[0] as tf.Tensor3D, cs[0] as tf.Tensor4D, cs[1] as tf.Tensor4D, cs[2] as tf.Tensor4D, past ? { k: xs[1] as tf.Tensor4D, v: xs[2] as tf.Tensor4D } : null);
      if (needKV) return [r.h, r.kv.k, r.kv.v];
      r.kv.k.dispose();
      r.kv.v.dispose();
      return [r.h];
    },
    inputs,
    [cos, sinSigned, mask],
    decoderLayerVariables(w),
  );
  if (needKV) return { h: outs[0] as tf.Tensor3D, kv: { k: tf.keep(outs[1] as tf.Tensor4D), v: tf.keep(outs[2] as tf.Tensor4D) } };
  // the caller disposes kv when it wants no cache: hand it two empty placeholders
  return { h: outs[0] as tf.Tensor3D, kv: { k: tf.keep(tf.zeros([0, 0, 0, 0])) as tf.Tensor4D, v: tf.keep(tf.zeros([0, 0, 0, 0])) as tf.Tensor4D } };
}
