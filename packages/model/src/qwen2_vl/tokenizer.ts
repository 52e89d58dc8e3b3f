import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "tokenizers";
import { ProcessorError } from "./processor_errors";

/** Special-token ids of a Qwen2(-VL) tokenizer (null where the vocabulary lacks the token). */
export interface SpecialTokenIds {
  pad: number | null;
  eos: number | null;
  bos: number | null;
  imStart: number | null;
  imEnd: number | null;
  visionStart: number | null;
  visionEnd: number | null;
  imagePad: number | null;
  videoPad: number | null;
}

function readJsonIfExists(file: string): any | null {
  if (!fs.existsSync(file)) return null;
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new ProcessorError(`${file}: not valid JSON: ${(e as Error).message}`, { code: "PROCESSOR_CORRUPT_FILE", details: { file }, cause: e });
  }
}

function tokenContent(t: unknown): string | null {
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && typeof (t as any).content === "string") return (t as any).content;
  return null;
}

/**
 * The Qwen2 byte-level BPE tokenizer (tokenizer.json through the Rust `tokenizers` package), with the
 * Hugging Face Qwen2 conventions: no special tokens added on encode (Qwen2 has no BOS), special tokens
 * skipped on decode by default, pad/eos from tokenizer_config.json.
 */
export class Qwen2Tokenizer {
  readonly specialIds: SpecialTokenIds;
  /** Every id flagged `special` in tokenizer.json's added_tokens. */
  readonly allSpecialIds: ReadonlySet<number>;
  /** tokenizer_config.json's padding_side (default "left" as in Qwen2-VL). */
  readonly paddingSide: "left" | "right";
  /** tokenizer_config.json's model_max_length, if any. */
  readonly modelMaxLength: number | null;
  /** tokenizer_config.json's chat_template, if any (string form). */
  readonly chatTemplate: string | null;

  private constructor(
    readonly inner: Tokenizer,
    readonly file: string,
    config: any | null,
    addedTokens: Array<{ id: number; content: string; special: boolean }>,
  ) {
    this.allSpecialIds = new Set(addedTokens.filter((t) => t.special).map((t) => t.id));
    const id = (tok: string | null) => (tok === null ? null : (this.inner.tokenToId(tok) ?? null));
    const cfg = config ?? {};
    const eos = tokenContent(cfg.eos_token) ?? "<|im_end|>";
    const pad = tokenContent(cfg.pad_token) ?? "<|endoftext|>";
    this.specialIds = {
      pad: id(pad),
      eos: id(eos),
      bos: id(tokenContent(cfg.bos_token)),
      imStart: id("<|im_start|>"),
      imEnd: id("<|im_end|>"),
      visionStart: id("<|vision_start|>"),
      visionEnd: id("<|vision_end|>"),
      imagePad: id("<|image_pad|>"),
      videoPad: id("<|video_pad|>"),
    };
    this.paddingSide = cfg.padding_side === "right" ? "right" : "left";
    this.modelMaxLength = typeof cfg.model_max_length === "number" && cfg.model_max_length < 1e15 ? cfg.model_max_length : null;
    let tpl: unknown = cfg.chat_template ?? null;
    if (Array.isArray(tpl)) tpl = tpl.find((t: any) => t?.name === "default")?.template ?? tpl[0]?.template ?? null;
    this.chatTemplate = typeof tpl === "string" ? tpl : null;
  }

  /**
   * Loads `tokenizer.json` (a file, or a folder holding it). The tokenizer_config.json beside it is read
   * when present (or the one given as `configPath`). Throws ProcessorError for a missing or corrupt file.
   */
  static fromFile(tokenizerPath: string, configPath?: string): Qwen2Tokenizer {
    let file = tokenizerPath;
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, "tokenizer.json");
    if (!fs.existsSync(file)) {
      throw new ProcessorError(`${file}: tokenizer file not found`, { code: "PROCESSOR_MISSING_FILE", details: { file } });
    }
    let json: any;
    try {
      json = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      throw new ProcessorError(`${file}: tokenizer.json is not valid JSON: ${(e as Error).message}`, {
        code: "PROCESSOR_CORRUPT_FILE",
        details: { file },
        cause: e,
      });
    }
    let inner: Tokenizer;
    try {
      inner = Tokenizer.fromFile(file);
    } catch (e) {
      throw new ProcessorError(`${file}: cannot load tokenizer: ${(e as Error).message}`, { code: "PROCESSOR_CORRUPT_FILE", details: { file }, cause: e });
    }
    const cfgFile = configPath ?? path.join(path.dirname(file), "tokenizer_config.json");
    const config = readJsonIfExists(cfgFile);
    const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
    return new Qwen2Tokenizer(inner, file, config, added);
  }

  /** Token ids of `text`, without added special tokens (special-token strings in the text are matched). */
  async encode(text: string): Promise<number[]> {
    const enc = await this.inner.encode(text, null, { addSpecialTokens: false });
    return enc.getIds();
  }

  /** Text of `ids`; special tokens are dropped unless skipSpecialTokens is false. */
  async decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): Promise<string> {
    return this.inner.decode(ids, opts.skipSpecialTokens ?? true);
  }

  tokenToId(token: string): number | null {
    return this.inner.tokenToId(token) ?? null;
  }

  idToToken(id: number): string | null {
    return this.inner.idToToken(id) ?? null;
  }

  /** Vocabulary size including added tokens. */
  get vocabSize(): number {
    return this.inner.getVocabSize(true);
  }
}
