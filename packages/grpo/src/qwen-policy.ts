import fs from "node:fs";
import path from "node:path";
import { Rng, writeFileAtomic, writeSafetensors } from "@rarl/core";
import {
  areAdaptersEnabled,
  buildBatch,
  generate,
  type Linear,
  lmHeadWeight,
  type Qwen2VLForConditionalGeneration,
  type Qwen2VLProcessor,
  setAdaptersEnabled,
  tokenLogprobs,
  transposedLmHead,
} from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { TrainConfigError } from "./errors";
import type { Completion, Policy, PreparedPrompt, SamplingOptions } from "./policy";

/** LoRA options of the Qwen2-VL policy (PEFT LoraConfig names in camelCase). */
export interface QwenLoraOptions {
  /** Rank r. Default 8. Paper: 8. */
  r?: number;
  /** lora_alpha. Default 16. Paper: 16. */
  alpha?: number;
  /** Module name suffixes to adapt. Default q/k/v/o_proj of the language model. Paper: ["q_proj","k_proj","v_proj","o_proj"]. */
  targetModules?: string[];
  /** Also adapt matching vision-tower modules (opt-in; the paper freezes the vision tower). Default false. */
  includeVision?: boolean;
  /** rsLoRA scaling alpha/√r instead of alpha/r. Default false. */
  useRslora?: boolean;
  /** LoRA dropout (applies only while the model's LoRA training flag is on). Default 0. Paper: not stated. */
  dropout?: number;
  /** Seed of the A init. Default 0. */
  seed?: number;
}

/** A prompt prepared once: token ids plus the merged image features, reused for the G samples and every log-prob pass. */
export interface QwenPrepared extends PreparedPrompt {
  pixelValues?: Float32Array;
  imageGridThw?: number[][];
  /** [imageTokens, H] merged vision features (computed once; frozen tower). */
  imageEmbeds?: tf.Tensor2D;
}

/** What the Qwen policy takes as a prompt: chat messages (with image slots) and the images, or ready token ids. */
export type QwenPromptInput =
  | { messages: Array<{ role: string; content: unknown }>; images?: Array<string | Uint8Array> }
  | { inputIds: number[]; pixelValues?: Float32Array; imageGridThw?: number[][] };

interface Adapted {
  name: string;
  linear: Linear;
  A: tf.Variable;
  B: tf.Variable;
}

let instance = 0;

/**
 * The Policy adapter over @rarl/model's Qwen2-VL: generation via `generate` (one prefill, cache tiled to G),
 * teacher-forced log-probs through a forward with precomputed `imageEmbeds`, LoRA through the Linear LoRA slots
 * (PEFT init: A kaiming-uniform(a = √5), B = 0), reference = adapters switched off, adapter saved in PEFT format.
 */
export class QwenPolicy implements Policy<QwenPromptInput, QwenPrepared> {
  private readonly adapted: Adapted[] = [];
  readonly r: number;
  readonly alpha: number;
  readonly scale: number;
  readonly targetModules: string[];
  private readonly id = instance++;

  constructor(
    readonly model: Qwen2VLForConditionalGeneration,
    readonly processor: Qwen2VLProcessor | null,
    private readonly lora: QwenLoraOptions = {},
  ) {
    this.r = lora.r ?? 8;
    this.alpha = lora.alpha ?? 16;
    this.targetModules = lora.targetModules ?? ["q_proj", "k_proj", "v_proj", "o_proj"];
    this.scale = lora.useRslora ? this.alpha / Math.sqrt(this.r) : this.alpha / this.r;
    if (!(Number.isInteger(this.r) && this.r > 0)) throw new TrainConfigError(`lora.r must be a positive integer, got ${this.r}`, { code: "CONFIG_INVALID", details: { field: "model.lora.r" } });
    const rng = new Rng(lora.seed ?? 0);
    for (const [name, linear] of model.namedLinears()) {
      if (!this.targetModules.some((t) => name === t || name.endsWith(`.${t}`))) continue;
      if (name.startsWith("visual.") && !lora.includeVision) continue;
      if (linear.lora) throw new TrainConfigError(`module ${name} already has a LoRA adapter`, { code: "CONFIG_INVALID", details: { module: name } });
      const inF = linear.inFeatures;
      // PEFT: nn.init.kaiming_uniform_(A, a=√5) -> bound = √(6 / ((1 + a²)·fan_in)) = 1/√fan_in.
      const bound = 1 / Math.sqrt(inF);
      const a = new Float32Array(this.r * inF);
      for (let i = 0; i < a.length; i++) a[i] = rng.uniform(-bound, bound);
      const A = tf.variable(tf.tensor2d(a, [this.r, inF]), true, `q${this.id}.${name}.lora_A`);
      const B = tf.variable(tf.zeros([linear.outFeatures, this.r]), true, `q${this.id}.${name}.lora_B`);
      linear.lora = { A, B, scale: this.scale, dropout: lora.dropout ?? 0 };
      this.adapted.push({ name, linear, A, B });
    }
    if (this.adapted.length === 0) {
      throw new TrainConfigError(`lora.targetModules ${JSON.stringify(this.targetModules)} match no module of the model`, { code: "CONFIG_INVALID", details: { field: "model.lora.targetModules" } });
    }
  }

  trainableVariables(): tf.Variable[] {
    return this.adapted.flatMap((a) => [a.A, a.B]);
  }

  trainableNames(): string[] {
    return this.adapted.flatMap((a) => [`${a.name}.lora_A`, `${a.name}.lora_B`]);
  }

  async prepare(prompt: QwenPromptInput): Promise<QwenPrepared> {
    let ids: number[];
    let pixelValues: Float32Array | undefined;
    let grid: number[][] | undefined;
    let promptText: string | undefined;
    let image: Uint8Array | undefined;
    if ("messages" in prompt) {
      if (!this.processor) throw new TrainConfigError("QwenPolicy: chat prompts need the processor", { code: "CONFIG_INVALID" });
      promptText = this.processor.applyChatTemplate(prompt.messages as never, { addGenerationPrompt: true });
      const out = await this.processor.process({ text: promptText, images: prompt.images });
      ids = out.inputIds[0];
      if (out.pixelValues.length > 0) {
        pixelValues = out.pixelValues;
        grid = out.imageGridThw;
      }
      const img = prompt.images?.[0];
      if (img !== undefined) image = typeof img === "string" ? fs.readFileSync(img) : img;
    } else {
      ids = prompt.inputIds;
      pixelValues = prompt.pixelValues;
      grid = prompt.imageGridThw;
    }
    let imageEmbeds: tf.Tensor2D | undefined;
    if (pixelValues && grid && pixelValues.length > 0) {
      const pv = tf.tensor2d(pixelValues, [pixelValues.length / 1176, 1176]);
      imageEmbeds = this.model.getImageFeatures(pv, grid);
      pv.dispose();
    }
    return { promptIds: ids, promptText, image, pixelValues, imageGridThw: grid, imageEmbeds };
  }

  release(prepared: QwenPrepared): void {
    prepared.imageEmbeds?.dispose();
    prepared.imageEmbeds = undefined;
  }

  async generate(prepared: QwenPrepared, o: SamplingOptions): Promise<Completion[]> {
    const res = await generate(this.model, this.processor, {
      prompts: [{ inputIds: prepared.promptIds, pixelValues: prepared.pixelValues, imageGridThw: prepared.imageGridThw }],
      numSamples: o.numSamples,
      maxNewTokens: o.maxNewTokens,
      doSample: true,
      temperature: o.temperature,
      topP: o.topP,
      topK: o.topK,
      minP: o.minP,
      repetitionPenalty: o.repetitionPenalty,
      seed: o.rng.nextU32(),
    });
    return res.samples[0].map((s) => ({ ids: s.ids, text: s.text, finishReason: s.finishReason === "length" ? "length" : "eos", logprobs: s.logprobs }));
  }

  completionLogprobs(items: Array<{ prepared: QwenPrepared; completionIds: number[] }>, T: number, temperature = 1): tf.Tensor2D {
    const B = items.length;
    const padId = this.processor?.tokenizer.specialIds.pad ?? 151643;
    const completions = items.map((it) => (it.completionIds.length ? it.completionIds : [padId]));
    const enc = buildBatch(
      items.map((it) => ({ inputIds: it.prepared.promptIds })),
      padId,
      completions,
    );
    const Lc = enc.completionLength;
    const Lp = enc.length - Lc;
    const H = this.model.config.hiddenSize;
    const tgt = new Int32Array(B * Lc).fill(padId);
    completions.forEach((c, b) => {
      c.forEach((t, i) => {
        tgt[b * Lc + i] = t;
      });
    });
    const embeds = items.map((it) => it.prepared.imageEmbeds).filter((e): e is tf.Tensor2D => e !== undefined);
    const grids = items.flatMap((it) => (it.prepared.imageEmbeds ? (it.prepared.imageGridThw ?? []) : []));
    try {
      return tf.tidy(() => {
        const out = this.model.forward({
          inputIds: enc.inputIds,
          attentionMask: enc.attentionMask,
          imageEmbeds: embeds.length ? (embeds.length === 1 ? embeds[0] : (tf.concat(embeds, 0) as tf.Tensor2D)) : undefined,
          imageGridThw: embeds.length ? grids : undefined,
          outputHiddenStates: true,
          skipLogits: true,
        });
        const hs = out.hiddenStates!;
        let h = tf.reshape(tf.slice(hs[hs.length - 1], [0, Lp - 1, 0], [B, Lc, H]), [B * Lc, H]) as tf.Tensor2D;
        // logits / T = (h / T) · Wᵀ: scaling the lm_head input divides the logits by the temperature.
        if (temperature !== 1) h = tf.div(h, temperature);
        const lp = tf.reshape(tokenLogprobs(h, lmHeadWeight(this.model), tf.tensor1d(tgt, "int32"), undefined, transposedLmHead(this.model)), [B, Lc]);
        if (Lc === T) return lp as tf.Tensor2D;
        if (Lc > T) return tf.slice(lp, [0, 0], [B, T]) as tf.Tensor2D;
        return tf.pad(lp, [
          [0, 0],
          [0, T - Lc],
        ]) as tf.Tensor2D;
      });
    } finally {
      tf.dispose([enc.inputIds, enc.attentionMask, ...(enc.pixelValues ? [enc.pixelValues] : [])]);
    }
  }

  withAdapterDisabled<T>(fn: () => T): T {
    const prev = areAdaptersEnabled();
    setAdaptersEnabled(false);
    try {
      return fn();
    } finally {
      setAdaptersEnabled(prev);
    }
  }

  /** PEFT format: adapter_model.safetensors (`base_model.model.<module>.lora_A.weight` / `.lora_B.weight`) + adapter_config.json. */
  saveAdapter(dir: string): void {
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const a of this.adapted) {
      tensors[`base_model.model.${a.name}.lora_A.weight`] = { dtype: "F32", shape: a.A.shape, data: a.A.dataSync() as Float32Array };
      tensors[`base_model.model.${a.name}.lora_B.weight`] = { dtype: "F32", shape: a.B.shape, data: a.B.dataSync() as Float32Array };
    }
    writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
    const config = {
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      base_model_name_or_path: null,
      r: this.r,
      lora_alpha: this.alpha,
      lora_dropout: this.lora.dropout ?? 0,
      target_modules: this.targetModules,
      use_rslora: this.lora.useRslora ?? false,
      use_dora: false,
      bias: "none",
      fan_in_fan_out: false,
      init_lora_weights: true,
      inference_mode: true,
      modules_to_save: null,
      layers_to_transform: null,
      layers_pattern: null,
      rank_pattern: {},
      alpha_pattern: {},
    };
    writeFileAtomic(path.join(dir, "adapter_config.json"), `${JSON.stringify(config, null, 2)}\n`);
  }

  async encode(text: string): Promise<number[]> {
    if (!this.processor) throw new TrainConfigError("QwenPolicy.encode needs the processor", { code: "CONFIG_INVALID" });
    return this.processor.tokenizer.encode(text);
  }

  /** Detaches the adapters from the model and frees them. */
  dispose(): void {
    for (const a of this.adapted) {
      a.linear.lora = null;
      tf.dispose([a.A, a.B]);
    }
    this.adapted.length = 0;
  }
}
