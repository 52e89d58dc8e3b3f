import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic, writeSafetensors } from "@rarl/core";
import type { Sample } from "@rarl/datasets";
import { type BuiltPolicy, POLICY_FACTORIES, QwenPolicy, type QwenPrepared, type TrainConfig, type TrainFileSections } from "@rarl/grpo";
import { loadQwen2VL, type Qwen2VLForConditionalGeneration } from "@rarl/model";
import type { ChatMessage } from "@rarl/prompts";
import * as tf from "@tensorflow/tfjs-core";
import { TOKENIZER_FILES } from "./checkpoint";

/** The image input of a sample for the processor: a path under the dataset root or the embedded bytes. */
export function sampleImage(sample: Sample, root: string): string | Uint8Array {
  return "path" in sample.image ? path.join(root, sample.image.path) : sample.image.bytes;
}

/**
 * Makes every language-model weight (decoder layers and final norm) a trainable tf.Variable, in place, and returns
 * them with hub names. The tied embedding / lm_head and the vision tower stay frozen: the embedding is 97% of the
 * demo model and its full-vocabulary gradient would dominate the step time.
 */
export function makeLanguageModelTrainable(model: Qwen2VLForConditionalGeneration): Array<{ name: string; variable: tf.Variable }> {
  const out: Array<{ name: string; variable: tf.Variable }> = [];
  const w = model.model.weights;
  let k = 0;
  const uid = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`;
  const v = <T extends tf.Tensor>(name: string, t: T): tf.Variable => {
    const variable = tf.variable(t, true, `full${uid}.${k++}.${name}`);
    out.push({ name, variable });
    return variable;
  };
  w.layers.forEach((l, i) => {
    const p = `model.layers.${i}.`;
    const iln = v(`${p}input_layernorm.weight`, l.inputLayernorm);
    l.inputLayernorm.dispose();
    l.inputLayernorm = iln as unknown as tf.Tensor1D;
    const pln = v(`${p}post_attention_layernorm.weight`, l.postAttentionLayernorm);
    l.postAttentionLayernorm.dispose();
    l.postAttentionLayernorm = pln as unknown as tf.Tensor1D;
  });
  for (const [name, lin] of model.model.namedLinears("model.")) {
    const wv = v(`${name}.weight`, lin.weight);
    lin.setWeight(wv as unknown as tf.Tensor2D, true);
    if (lin.bias) {
      const bv = v(`${name}.bias`, lin.bias);
      lin.bias.dispose();
      lin.bias = bv as unknown as tf.Tensor1D;
    }
  }
  const nv = v("model.norm.weight", w.norm);
  w.norm.dispose();
  w.norm = nv as unknown as tf.Tensor1D;
  return out;
}

/** Every weight of the model with hub names (for saving a full checkpoint). */
function allWeights(model: Qwen2VLForConditionalGeneration): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  const w = model.model.weights;
  out["model.embed_tokens.weight"] = w.embedTokens;
  if (w.lmHead) out["lm_head.weight"] = w.lmHead;
  w.layers.forEach((l, i) => {
    out[`model.layers.${i}.input_layernorm.weight`] = l.inputLayernorm;
    out[`model.layers.${i}.post_attention_layernorm.weight`] = l.postAttentionLayernorm;
  });
  out["model.norm.weight"] = w.norm;
  for (const [name, lin] of model.namedLinears()) {
    out[`${name}.weight`] = lin.weight;
    if (lin.bias) out[`${name}.bias`] = lin.bias;
  }
  const vw = model.visual.weights;
  const E = model.config.visionConfig.embedDim;
  const v = model.config.visionConfig;
  out["visual.patch_embed.proj.weight"] = tf.reshape(vw.patchEmbed.weight, [E, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize]);
  vw.blocks.forEach((b, i) => {
    out[`visual.blocks.${i}.norm1.weight`] = b.norm1.weight;
    out[`visual.blocks.${i}.norm1.bias`] = b.norm1.bias;
    out[`visual.blocks.${i}.norm2.weight`] = b.norm2.weight;
    out[`visual.blocks.${i}.norm2.bias`] = b.norm2.bias;
  });
  out["visual.merger.ln_q.weight"] = vw.lnQ.weight;
  out["visual.merger.ln_q.bias"] = vw.lnQ.bias;
  return out;
}

/** Writes the model as a Hugging Face folder (config.json, model.safetensors F32, tokenizer files copied from `srcDir`). */
export function saveFullModel(model: Qwen2VLForConditionalGeneration, srcDir: string, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  const ws = allWeights(model);
  for (const [name, t] of Object.entries(ws)) tensors[name] = { dtype: "F32", shape: t.shape, data: t.dataSync() as Float32Array };
  const reshaped = ws["visual.patch_embed.proj.weight"];
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  reshaped.dispose();
  for (const f of ["config.json", ...TOKENIZER_FILES]) {
    const src = path.join(srcDir, f);
    if (fs.existsSync(src)) writeFileAtomic(path.join(dir, f), fs.readFileSync(src));
  }
}

type DemoPrompt = { messages: ChatMessage[]; sample: Sample; root: string };

/**
 * The `qwen2vl` policy type for `rarl train`: Qwen2-VL from a Hugging Face folder (`model.path`, relative to the
 * config file) through @rarl/grpo's QwenPolicy. LoRA (`model.lora`: r, alpha, targetModules, dropout, useRslora;
 * paper r = 8, α = 16 on q/k/v/o) unless the SFT config says `finetune: "full"`, which trains every language-model
 * weight but the tied embedding (the final "adapter" folder is then a full model folder). The vision tower is
 * always frozen (paper §2.3): image features are computed once per prompt outside the gradient tape.
 */
export async function qwen2vlPolicyFactory(m: TrainFileSections["model"], ctx: { configDir: string; cfg: TrainConfig }): Promise<BuiltPolicy> {
  const dir = path.resolve(ctx.configDir, String(m.path));
  const { model, processor } = await loadQwen2VL(dir);
  const full = ctx.cfg.trainer === "sft" && ctx.cfg.finetune === "full";
  const lora = (m.lora ?? {}) as Record<string, unknown>;
  const qp = new QwenPolicy(model, processor, full ? { r: 1, targetModules: ["q_proj"] } : { ...lora, seed: (lora.seed as number | undefined) ?? ctx.cfg.seed });
  const fullVars = full ? makeLanguageModelTrainable(model) : [];
  if (full) for (const [, lin] of model.namedLinears()) lin.lora = null; // full fine-tuning: no adapter in the graph
  const policy: BuiltPolicy["policy"] = {
    trainableVariables: () => (full ? fullVars.map((x) => x.variable) : qp.trainableVariables()),
    trainableNames: () => (full ? fullVars.map((x) => x.name) : qp.trainableNames()),
    prepare: ({ messages, sample, root }: DemoPrompt) => qp.prepare({ messages, images: [sampleImage(sample, root)] }),
    release: (h) => qp.release(h as QwenPrepared),
    generate: (h, o) => qp.generate(h as QwenPrepared, o),
    completionLogprobs: (items, T, temp) => qp.completionLogprobs(items as Array<{ prepared: QwenPrepared; completionIds: number[] }>, T, temp),
    withAdapterDisabled: (fn) => qp.withAdapterDisabled(fn),
    saveAdapter: (out) => (full ? saveFullModel(model, dir, out) : qp.saveAdapter(out)),
    encode: async (text) => {
      // SFT targets end with the end-of-turn token the model must learn to emit.
      const ids = await qp.encode(text);
      return [...ids, processor?.tokenizer.specialIds.imEnd ?? 151645];
    },
  };
  return {
    policy,
    dispose: () => {
      qp.dispose();
      for (const x of fullVars) x.variable.dispose();
    },
  };
}

let registered = false;

/**
 * Registers the `qwen2vl` policy type with @rarl/grpo's runTrain: @rarl/grpo's own factory for LoRA when it has one,
 * and {@link qwen2vlPolicyFactory} for `finetune: "full"` (which @rarl/grpo does not wire) or when it has none.
 */
export function registerDemoPolicies(): void {
  if (registered) return;
  registered = true;
  const prev = POLICY_FACTORIES.qwen2vl;
  POLICY_FACTORIES.qwen2vl = (m, ctx) => {
    const full = ctx.cfg.trainer === "sft" && ctx.cfg.finetune === "full";
    return full || !prev ? qwen2vlPolicyFactory(m, ctx) : prev(m, ctx);
  };
}
