import fs from "node:fs";
import path from "node:path";
import { type ChatMessage, ChatTemplate, loadChatTemplate } from "./chat_template";
import type { ImageInput } from "./image";
import { Qwen2VLImageProcessor } from "./image_processor";
import { ProcessorError } from "./processor_errors";
import { Qwen2Tokenizer } from "./tokenizer";

/** Options of {@link Qwen2VLProcessor.fromPretrained}. */
export interface ProcessorLoadOptions {
  /** tokenizer.json (or a folder holding it) to use instead of the checkpoint's own. */
  tokenizerPath?: string;
}

/** Input of {@link Qwen2VLProcessor.process}. */
export interface ProcessInput {
  /** One prompt or a batch; each `<|image_pad|>` is one image slot. */
  text: string | string[];
  /** Images for the slots, in order over the whole batch (file path, encoded bytes or decoded RGB). */
  images?: ImageInput[];
  /** Which side pads a batch. Default: tokenizer_config's padding_side ("left" for Qwen2-VL). */
  padding?: "left" | "right";
  /** Reject any sequence longer than this (after image expansion). Default: no limit. */
  maxLength?: number;
}

/** Output of {@link Qwen2VLProcessor.process}. */
export interface ProcessorOutput {
  inputIds: number[][];
  attentionMask: number[][];
  /** Row-major [N, 1176] patches of every image in order (empty when there are no images). */
  pixelValues: Float32Array;
  pixelShape: [number, number];
  imageGridThw: number[][];
  /** The prompts after `<|image_pad|>` expansion. */
  expandedText: string[];
}

const IMAGE_PAD = "<|image_pad|>";

function countOccurrences(text: string, needle: string): number {
  let n = 0;
  let i = text.indexOf(needle);
  while (i !== -1) {
    n++;
    i = text.indexOf(needle, i + needle.length);
  }
  return n;
}

/** Qwen2VLProcessor (transformers 4.47 semantics): chat template, image processor, pad expansion, tokenizer. */
export class Qwen2VLProcessor {
  constructor(
    readonly imageProcessor: Qwen2VLImageProcessor,
    readonly tokenizer: Qwen2Tokenizer,
    readonly chatTemplate: ChatTemplate | null,
  ) {}

  /**
   * Loads preprocessor_config.json, tokenizer.json (+ tokenizer_config.json) and the chat template
   * (chat_template.json or tokenizer_config.json) from a checkpoint folder.
   */
  static fromPretrained(dir: string, opts: ProcessorLoadOptions = {}): Qwen2VLProcessor {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      throw new ProcessorError(`${dir}: checkpoint folder not found`, { code: "PROCESSOR_MISSING_FILE", details: { file: dir } });
    }
    const imageProcessor = Qwen2VLImageProcessor.fromPretrained(path.join(dir, "preprocessor_config.json"));
    const cfgPath = path.join(dir, "tokenizer_config.json");
    const tokenizer = Qwen2Tokenizer.fromFile(opts.tokenizerPath ?? path.join(dir, "tokenizer.json"), fs.existsSync(cfgPath) ? cfgPath : undefined);
    const src = loadChatTemplate(dir) ?? tokenizer.chatTemplate;
    return new Qwen2VLProcessor(imageProcessor, tokenizer, src === null ? null : new ChatTemplate(src));
  }

  /** Renders chat messages with the checkpoint's template. */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt?: boolean; extra?: Record<string, unknown> } = {}): string {
    if (!this.chatTemplate) throw new ProcessorError("this checkpoint has no chat template", { code: "PROCESSOR_BAD_CONFIG" });
    return this.chatTemplate.render(messages, opts);
  }

  /** Replaces the i-th `<|image_pad|>` by tokensPerImage[i] copies. Throws IMAGE_PAD_MISMATCH when the counts differ. Pure. */
  static expandImagePads(texts: string[], tokensPerImage: number[]): string[] {
    const slots = texts.reduce((a, t) => a + countOccurrences(t, IMAGE_PAD), 0);
    if (slots !== tokensPerImage.length) {
      throw new ProcessorError(`the text has ${slots} ${IMAGE_PAD} slot(s) but ${tokensPerImage.length} image(s) were given`, {
        code: "IMAGE_PAD_MISMATCH",
        details: { slots, images: tokensPerImage.length },
      });
    }
    let k = 0;
    return texts.map((t) => t.split(IMAGE_PAD).reduce((acc, part, i) => (i === 0 ? part : acc + IMAGE_PAD.repeat(tokensPerImage[k++]) + part), ""));
  }

  /** Tokenizes prompts with their images: expands image pads, encodes, pads the batch. */
  async process(input: ProcessInput): Promise<ProcessorOutput> {
    const texts = typeof input.text === "string" ? [input.text] : input.text;
    if (!Array.isArray(texts) || texts.length === 0 || !texts.every((t) => typeof t === "string")) {
      throw new ProcessorError("text must be a string or a non-empty array of strings", { code: "BAD_INPUT" });
    }
    const images = input.images ?? [];
    const slots = texts.reduce((a, t) => a + countOccurrences(t, IMAGE_PAD), 0);
    if (slots !== images.length) {
      throw new ProcessorError(`the text has ${slots} ${IMAGE_PAD} slot(s) but ${images.length} image(s) were given`, {
        code: "IMAGE_PAD_MISMATCH",
        details: { slots, images: images.length },
      });
    }
    const vis = images.length > 0 ? await this.imageProcessor.preprocess(images) : null;
    const grids = vis?.imageGridThw ?? [];
    const expandedText = Qwen2VLProcessor.expandImagePads(
      texts,
      grids.map((g) => this.imageProcessor.tokensFor(g)),
    );
    const ids = await Promise.all(expandedText.map((t) => this.tokenizer.encode(t)));
    if (input.maxLength !== undefined) {
      ids.forEach((row, i) => {
        if (row.length > input.maxLength!) {
          throw new ProcessorError(`prompt ${i} has ${row.length} tokens, more than the maximum ${input.maxLength}`, {
            code: "SEQUENCE_TOO_LONG",
            details: { row: i, length: row.length, maxLength: input.maxLength },
          });
        }
      });
    }
    const padId = this.tokenizer.specialIds.pad ?? this.tokenizer.specialIds.eos ?? 0;
    const side = input.padding ?? this.tokenizer.paddingSide;
    const S = Math.max(...ids.map((r) => r.length));
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const row of ids) {
      const pad = new Array<number>(S - row.length).fill(padId);
      const zeros = new Array<number>(S - row.length).fill(0);
      const ones = new Array<number>(row.length).fill(1);
      inputIds.push(side === "left" ? [...pad, ...row] : [...row, ...pad]);
      attentionMask.push(side === "left" ? [...zeros, ...ones] : [...ones, ...zeros]);
    }
    const D = 3 * this.imageProcessor.config.temporalPatchSize * this.imageProcessor.config.patchSize ** 2;
    return {
      inputIds,
      attentionMask,
      pixelValues: vis?.pixelValues ?? new Float32Array(0),
      pixelShape: vis?.pixelShape ?? [0, D],
      imageGridThw: grids,
      expandedText,
    };
  }
}
