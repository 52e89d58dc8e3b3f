import fs from "node:fs";
import path from "node:path";
import { openCheckpoint, type TensorToWrite, writeSafetensors } from "@rarl/core";
import { normalizeKey, type Qwen2VLForConditionalGeneration, type Qwen2VLProcessor } from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { TrainConfigError } from "./errors";
import type { Completion, Policy, SamplingOptions } from "./policy";
import { QwenPolicy, type QwenPrepared, type QwenPromptInput } from "./qwen-policy";

let counter = 0;

/** Files of a Hugging Face model folder that are not weights (copied into each saved model). */
const WEIGHT_FILE = /^(model.*\.safetensors|model\.safetensors\.index\.json|pytorch_model.*\.bin.*)$/;

/**
 * Full fine-tuning of Qwen2-VL's language model (SFT baseline, `finetune: "full"`): every Linear weight and bias of the
 * decoder (q/k/v/o, gate/up/down of every layer) and every RMSNorm weight (input_layernorm, post_attention_layernorm of
 * every layer, the final model.norm) becomes a trainable tf.Variable; the token embedding / lm_head (tied or not) and the
 * vision tower stay frozen. `saveAdapter(dir)` writes a complete Hugging Face model folder
 * (config, tokenizer and processor files copied from the source, `model.safetensors` with every weight in float32, hub
 * key names), loadable by `loadQwen2VL` and by transformers.
 */
export class QwenFullPolicy implements Policy<QwenPromptInput, QwenPrepared> {
  private readonly vars: tf.Variable[] = [];
  private readonly names: string[] = [];
  /** Generation / log-prob machinery of the LoRA policy, reused (no adapter attached). */
  private readonly base: Pick<QwenPolicy, "prepare" | "release" | "generate" | "completionLogprobs" | "completionLogprobsWithEntropy" | "encode" | "setGradientCheckpointing">;

  constructor(
    readonly model: Qwen2VLForConditionalGeneration,
    readonly processor: Qwen2VLProcessor | null,
    /** The Hugging Face folder the model was loaded from (for the non-trained weights and the config files). */
    readonly sourceDir: string,
  ) {
    this.base = QwenPolicy.withoutAdapter(model, processor);
    for (const [name, lin] of model.namedLinears()) {
      if (!name.startsWith("model.layers.")) continue;
      const host = lin.residency === "host" ? lin.hostWeight : null;
      const init = host ? tf.tensor2d(host.data, [lin.outFeatures, lin.inFeatures]) : lin.weight;
      const w = tf.variable(init, true, `full/${name}.weight#${counter++}`); // shares init's data
      lin.setWeight(w as unknown as tf.Tensor2D, !host);
      if (host) init.dispose();
      this.vars.push(w);
      this.names.push(`${name}.weight`);
      if (lin.bias) {
        const b = tf.variable(lin.bias, true, `full/${name}.bias#${counter++}`);
        lin.bias.dispose();
        lin.bias = b as unknown as tf.Tensor1D;
        this.vars.push(b);
        this.names.push(`${name}.bias`);
      }
    }
    const lw = model.model.weights;
    const norm = (name: string, t: tf.Tensor1D): tf.Tensor1D => {
      const v = tf.variable(t, true, `full/${name}#${counter++}`); // a copy: the frozen original is disposed
      t.dispose();
      this.vars.push(v);
      this.names.push(name);
      return v as unknown as tf.Tensor1D;
    };
    lw.layers.forEach((l, i) => {
      l.inputLayernorm = norm(`model.layers.${i}.input_layernorm.weight`, l.inputLayernorm);
      l.postAttentionLayernorm = norm(`model.layers.${i}.post_attention_layernorm.weight`, l.postAttentionLayernorm);
    });
    lw.norm = norm("model.norm.weight", lw.norm);
    if (this.vars.length === 0) throw new TrainConfigError("full fine-tuning: the model has no decoder Linear layers", { code: "CONFIG_INVALID" });
  }

  trainableVariables(): tf.Variable[] {
    return this.vars;
  }

  trainableNames(): string[] {
    return this.names;
  }

  prepare(prompt: QwenPromptInput): Promise<QwenPrepared> {
    return this.base.prepare(prompt);
  }

  release(prepared: QwenPrepared): void {
    this.base.release(prepared);
  }

  generate(prepared: QwenPrepared, opts: SamplingOptions): Promise<Completion[]> {
    return this.base.generate(prepared, opts);
  }

  completionLogprobs(items: Array<{ prepared: QwenPrepared; completionIds: number[] }>, T: number, temperature?: number): tf.Tensor2D {
    return this.base.completionLogprobs(items, T, temperature);
  }

  completionLogprobsWithEntropy(items: Array<{ prepared: QwenPrepared; completionIds: number[] }>, T: number, temperature?: number): { logp: tf.Tensor2D; entropy: tf.Tensor2D } {
    return this.base.completionLogprobsWithEntropy(items, T, temperature);
  }

  withAdapterDisabled<T>(): T {
    throw new TrainConfigError("full fine-tuning has no adapter to switch off (no reference policy): use LoRA for GRPO", { code: "CONFIG_INVALID", details: { field: "finetune" } });
  }

  encode(text: string): Promise<number[]> {
    return this.base.encode(text);
  }

  /** Activation checkpointing of the decoder layers (@rarl/model's `gradientCheckpointing`) under a gradient tape. */
  setGradientCheckpointing(on: boolean): void {
    this.base.setGradientCheckpointing(on);
  }

  /** Writes a complete model folder: the source's config/tokenizer/processor files + model.safetensors (F32, hub names). */
  saveAdapter(dir: string): void {
    fs.mkdirSync(dir, { recursive: true });
    for (const f of fs.readdirSync(this.sourceDir)) {
      const p = path.join(this.sourceDir, f);
      if (!WEIGHT_FILE.test(f) && fs.statSync(p).isFile()) fs.copyFileSync(p, path.join(dir, f));
    }
    const trained = new Map<string, tf.Variable>();
    for (const [i, n] of this.names.entries()) trained.set(n, this.vars[i]);
    const src = openCheckpoint(this.sourceDir);
    const out: Record<string, TensorToWrite> = {};
    for (const key of src.keys()) {
      const hub = normalizeKey(key);
      const v = trained.get(hub);
      if (v) out[hub] = { dtype: "F32", shape: [...v.shape], data: v.dataSync() as Float32Array };
      else {
        const t = src.read(key);
        out[hub] = { dtype: t.dtype === "F16" || t.dtype === "BF16" ? "F32" : (t.dtype as TensorToWrite["dtype"]), shape: t.shape, data: t.data };
      }
    }
    writeSafetensors(path.join(dir, "model.safetensors"), out, { format: "pt" });
  }

  dispose(): void {
    // The variables are now the model's weights; the model's own dispose() frees them.
  }
}
