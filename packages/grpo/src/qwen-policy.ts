import fs from "node:fs";
import { Rng } from "@rarl/core";
import {
  applyLora,
  buildBatch,
  generate,
  type LoraAdapter,
  logprobHead,
  type Qwen2VLForConditionalGeneration,
  type Qwen2VLProcessor,
  tokenLogprobs,
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
  /**
   * Modules to adapt (PEFT rule: path equals a name or ends with "." + name). Default q/k/v/o_proj of the language
   * model. Paper: ["q_proj","k_proj","v_proj","o_proj"]. Vision-tower modules are opt-in by naming them with their
   * "visual." path (the paper freezes the vision tower).
   */
  targetModules?: string[];
  /** rsLoRA scaling alpha/√r instead of alpha/r. Default false. */
  useRslora?: boolean;
  /**
   * lora_dropout written to adapter_config.json. Default 0. Paper: not stated. The trainers never switch the model's
   * LoRA training flag on: tfjs dropout masks are not drawn from the run's seeded RNG, which would break exact resume.
   */
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

/**
 * The Policy adapter over @rarl/model's Qwen2-VL: generation via `generate` (one prefill, cache tiled to G),
 * teacher-forced log-probs through a forward with precomputed `imageEmbeds`, LoRA from @rarl/model's applyLora
 * (PEFT init: A kaiming-uniform(a = √5), B = 0), reference = adapters switched off, adapter saved in PEFT format.
 */
export class QwenPolicy implements Policy<QwenPromptInput, QwenPrepared> {
  /** The LoRA adapter (@rarl/model's applyLora: PEFT init, adapter-off scope, PEFT save). */
  readonly adapter: LoraAdapter;

  /** The generation / log-prob part only, with no adapter attached (for full fine-tuning). */
  static withoutAdapter(model: Qwen2VLForConditionalGeneration, processor: Qwen2VLProcessor | null): QwenPolicy {
    return new QwenPolicy(model, processor, {}, false);
  }

  constructor(
    readonly model: Qwen2VLForConditionalGeneration,
    readonly processor: Qwen2VLProcessor | null,
    lora: QwenLoraOptions = {},
    attach = true,
  ) {
    if (!attach) {
      this.adapter = null as unknown as LoraAdapter;
      return;
    }
    try {
      this.adapter = applyLora(
        model,
        {
          r: lora.r ?? 8,
          lora_alpha: lora.alpha ?? 16,
          lora_dropout: lora.dropout ?? 0,
          target_modules: lora.targetModules ?? ["q_proj", "k_proj", "v_proj", "o_proj"],
          use_rslora: lora.useRslora ?? false,
        },
        new Rng(lora.seed ?? 0),
      );
    } catch (e) {
      throw new TrainConfigError(`model.lora: ${(e as Error).message}`, { code: "CONFIG_INVALID", details: { field: "model.lora" }, cause: e });
    }
  }

  get r(): number {
    return this.adapter.config.r;
  }

  /** The image/video pad and vision start/end ids (config.json's, or the tokenizer's), suppressed when sampling. */
  get visionTokenIds(): number[] {
    const c = this.model.config;
    const t = this.processor?.tokenizer.specialIds;
    const ids = [c.imageTokenId, c.videoTokenId, c.visionStartTokenId, c.visionEndTokenId, t?.imagePad, t?.videoPad, t?.visionStart, t?.visionEnd];
    return [...new Set(ids.filter((x): x is number => typeof x === "number"))];
  }

  trainableVariables(): tf.Variable[] {
    return this.adapter.trainableVariables();
  }

  trainableNames(): string[] {
    return [...this.adapter.modules.keys()].flatMap((name) => [`${name}.lora_A`, `${name}.lora_B`]);
  }

  async prepare(prompt: QwenPromptInput): Promise<QwenPrepared> {
    let ids: number[];
    let pixelValues: Float32Array | undefined;
    let grid: number[][] | undefined;
    let promptText: string | undefined;
    let image: Uint8Array | undefined;
    let chatMessages: Array<{ role: string; content: string }> | undefined;
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
      // Text-only OpenAI messages for remote backends (VllmBackend adds the image to the first user turn).
      chatMessages = prompt.messages.map((m) => ({
        role: m.role,
        content:
          typeof m.content === "string"
            ? m.content
            : (m.content as Array<{ type: string; text?: string }>)
                .filter((p) => p.type === "text")
                .map((p) => p.text ?? "")
                .join("\n"),
      }));
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
    return { promptIds: ids, promptText, image, chatMessages, pixelValues, imageGridThw: grid, imageEmbeds };
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
      // A sampled <|image_pad|> (or video/vision marker) would make the completion's teacher-forced forward look for
      // image features that do not exist; a small or young model does sample them, so they are never chosen.
      suppressTokens: this.visionTokenIds,
      seed: o.rng.nextU32(),
    });
    return res.samples[0].map((s) => ({ ids: s.ids, text: s.text, finishReason: s.finishReason === "length" ? "length" : "eos", logprobs: s.logprobs }));
  }

  completionLogprobs(items: Array<{ prepared: QwenPrepared; completionIds: number[] }>, T: number, temperature = 1): tf.Tensor2D {
    return this.logprobsPass(items, T, temperature, false).logp;
  }

  /** Log-probs and per-token entropies [B, T] from the same chunked lm_head pass (entropy without gradient; 0 beyond each completion). */
  completionLogprobsWithEntropy(items: Array<{ prepared: QwenPrepared; completionIds: number[] }>, T: number, temperature = 1): { logp: tf.Tensor2D; entropy: tf.Tensor2D } {
    const r = this.logprobsPass(items, T, temperature, true);
    return { logp: r.logp, entropy: r.entropy! };
  }

  private logprobsPass(items: Array<{ prepared: QwenPrepared; completionIds: number[] }>, T: number, temperature: number, withEntropy: boolean): { logp: tf.Tensor2D; entropy: tf.Tensor2D | null } {
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
    const fit = (x: tf.Tensor): tf.Tensor2D => {
      const lp = tf.reshape(x, [B, Lc]) as tf.Tensor2D;
      if (Lc === T) return lp;
      if (Lc > T) return tf.slice(lp, [0, 0], [B, T]) as tf.Tensor2D;
      return tf.pad(lp, [
        [0, 0],
        [0, T - Lc],
      ]) as tf.Tensor2D;
    };
    const entOut: { entropy?: tf.Tensor1D } = {};
    let entropy: tf.Tensor2D | null = null;
    try {
      const logp = tf.tidy(() => {
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
        const head = logprobHead(this.model);
        const lp = tokenLogprobs(h, head.weight, tf.tensor1d(tgt, "int32"), undefined, head.weightT, withEntropy ? entOut : undefined);
        if (entOut.entropy) {
          entropy = tf.keep(fit(entOut.entropy));
          entOut.entropy.dispose();
        }
        return fit(lp);
      });
      return { logp, entropy };
    } finally {
      tf.dispose([enc.inputIds, enc.attentionMask, ...(enc.pixelValues ? [enc.pixelValues] : [])]);
    }
  }

  withAdapterDisabled<T>(fn: () => T): T {
    return this.adapter.withAdapterDisabled(fn);
  }

  /** Activation checkpointing of the decoder layers (@rarl/model's `gradientCheckpointing`) under a gradient tape. */
  setGradientCheckpointing(on: boolean): void {
    this.model.gradientCheckpointing = on;
  }

  /** PEFT format via @rarl/model: adapter_model.safetensors (`base_model.model.<module>.lora_A.weight` / `.lora_B.weight`) + adapter_config.json. */
  saveAdapter(dir: string): void {
    this.adapter.save(dir);
  }

  async encode(text: string): Promise<number[]> {
    if (!this.processor) throw new TrainConfigError("QwenPolicy.encode needs the processor", { code: "CONFIG_INVALID" });
    return this.processor.tokenizer.encode(text);
  }

  /** Detaches the adapter from the model and frees it. */
  dispose(): void {
    this.adapter.remove();
  }
}
