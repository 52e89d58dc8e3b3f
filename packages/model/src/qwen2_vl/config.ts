import fs from "node:fs";
import path from "node:path";
import { RarlError } from "@rarl/core";

/** A config.json is missing, unreadable, or describes a model this package does not implement. */
export class ModelConfigError extends RarlError {}

/**
 * Vision tower config (`config.json` → `vision_config`), as transformers 4.47 `Qwen2VLVisionConfig`.
 * Defaults are transformers' defaults (which are Qwen2-VL-7B's; the 2B checkpoint sets every field explicitly).
 */
export interface Qwen2VLVisionConfig {
  /** Number of vision blocks. Default 32. */
  depth: number;
  /** Width of the vision transformer. Default 1280. */
  embedDim: number;
  /** Output width of the PatchMerger (= the language model's hidden size). Default 3584 (2B: 1536). */
  hiddenSize: number;
  /** Activation of the vision MLP. Default "quick_gelu" (x·sigmoid(1.702x)); "gelu" (erf) and "silu" also accepted. */
  hiddenAct: string;
  /** MLP width = embedDim × mlpRatio. Default 4. */
  mlpRatio: number;
  /** Attention heads of the vision blocks. Default 16. */
  numHeads: number;
  /** Image channels; hub files name it `in_chans`, transformers 4.47 `in_channels`; both are read. Default 3. */
  inChannels: number;
  /** Spatial patch side in pixels. Default 14. */
  patchSize: number;
  /** Side of the square of patches merged into one LLM token. Default 2. */
  spatialMergeSize: number;
  /** Frames per temporal patch (an image is duplicated to this many frames). Default 2. */
  temporalPatchSize: number;
}

/**
 * Qwen2-VL config (`config.json`, transformers 4.47 `Qwen2VLConfig`: the text fields sit at the top level).
 * Defaults are transformers 4.47's (Qwen2-VL-7B); values of Qwen2-VL-2B-Instruct in brackets.
 */
export interface Qwen2VLConfig {
  /** Always "qwen2_vl" (other model types are rejected). */
  modelType: "qwen2_vl";
  /** Vocabulary size. Default 152064 [151936]. */
  vocabSize: number;
  /** Width of the decoder. Default 8192 [1536]. */
  hiddenSize: number;
  /** SwiGLU MLP width. Default 29568 [8960]. */
  intermediateSize: number;
  /** Decoder layers. Default 80 [28]. */
  numHiddenLayers: number;
  /** Query heads. Default 64 [12]. */
  numAttentionHeads: number;
  /** Key/value heads (grouped-query attention). Default 8 [2]. */
  numKeyValueHeads: number;
  /** hiddenSize / numAttentionHeads (derived; not a config.json field). */
  headDim: number;
  /** Decoder MLP activation. Default "silu" (the only one supported). */
  hiddenAct: string;
  /** Longest sequence the model accepts (positions); longer inputs are a typed error. Default 32768. */
  maxPositionEmbeddings: number;
  /** RMSNorm epsilon. Default 1e-5 [1e-6]. */
  rmsNormEps: number;
  /** RoPE base. Default 1e6. */
  ropeTheta: number;
  /**
   * M-RoPE split of the head_dim/2 rotary frequencies into temporal/height/width sections
   * (`rope_scaling.mrope_section`). Must sum to headDim/2. Default: none in transformers (required here) [16, 24, 24].
   */
  mropeSection: [number, number, number];
  /** lm_head shares embed_tokens' weight (no `lm_head.weight` in the file). Default false [true]. */
  tieWordEmbeddings: boolean;
  /** Token id of `<|image_pad|>`. Default 151655. */
  imageTokenId: number;
  /** Token id of `<|video_pad|>`. Default 151656. */
  videoTokenId: number;
  /** Token id of `<|vision_start|>`. Default 151652. */
  visionStartTokenId: number;
  /** Token id of `<|vision_end|>`. Default 151653. */
  visionEndTokenId: number;
  /** bos id. Default 151643. */
  bosTokenId: number;
  /** eos id (config.json; generation_config.json may list more). Default 151645. */
  eosTokenId: number | number[];
  /** The vision tower's config. */
  visionConfig: Qwen2VLVisionConfig;
}

type Json = Record<string, unknown>;

function num(obj: Json, key: string, dflt: number | undefined, file: string, integer = true): number {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new ModelConfigError(`${file}: required field "${key}" is missing`, { code: "CONFIG_FIELD", details: { file, field: key } });
    return dflt;
  }
  if (typeof v !== "number" || !Number.isFinite(v) || (integer && (!Number.isInteger(v) || v <= 0))) {
    throw new ModelConfigError(`${file}: field "${key}" must be a ${integer ? "positive integer" : "finite number"}, got ${JSON.stringify(v)}`, {
      code: "CONFIG_FIELD",
      details: { file, field: key },
    });
  }
  return v;
}

function str(obj: Json, key: string, dflt: string): string {
  const v = obj[key];
  return typeof v === "string" ? v : dflt;
}

/** Parses the vision_config object. `file` names the source in errors. */
export function parseVisionConfig(v: Json, file = "config.json"): Qwen2VLVisionConfig {
  const f = `${file} (vision_config)`;
  const inChannels = v.in_channels !== undefined ? num(v, "in_channels", 3, f) : num(v, "in_chans", 3, f);
  const cfg: Qwen2VLVisionConfig = {
    depth: num(v, "depth", 32, f),
    embedDim: num(v, "embed_dim", 1280, f),
    hiddenSize: num(v, "hidden_size", 3584, f),
    hiddenAct: str(v, "hidden_act", "quick_gelu"),
    mlpRatio: num(v, "mlp_ratio", 4, f, false),
    numHeads: num(v, "num_heads", 16, f),
    inChannels,
    patchSize: num(v, "patch_size", num(v, "spatial_patch_size", 14, f), f),
    spatialMergeSize: num(v, "spatial_merge_size", 2, f),
    temporalPatchSize: num(v, "temporal_patch_size", 2, f),
  };
  if (cfg.embedDim % cfg.numHeads !== 0 || (cfg.embedDim / cfg.numHeads) % 4 !== 0) {
    throw new ModelConfigError(`${f}: embed_dim ${cfg.embedDim} must split into num_heads ${cfg.numHeads} heads whose size is a multiple of 4 (2-D rotary)`, {
      code: "CONFIG_FIELD",
      details: { file, field: "embed_dim" },
    });
  }
  if (!["quick_gelu", "gelu", "silu"].includes(cfg.hiddenAct)) {
    throw new ModelConfigError(`${f}: unsupported hidden_act "${cfg.hiddenAct}" (expected quick_gelu, gelu or silu)`, {
      code: "CONFIG_FIELD",
      details: { file, field: "hidden_act" },
    });
  }
  return cfg;
}

/**
 * Parses a Qwen2-VL config.json object (hub layout, as transformers 4.47 reads it; a nested `text_config`,
 * as transformers >= 4.52 writes it, is accepted too: its fields override the top level).
 * Throws ModelConfigError for another model_type or an inconsistent field.
 */
export function parseQwen2VLConfig(raw: unknown, file = "config.json"): Qwen2VLConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ModelConfigError(`${file}: expected a JSON object`, { code: "CONFIG_JSON", details: { file } });
  }
  const top = raw as Json;
  if (top.model_type !== "qwen2_vl") {
    throw new ModelConfigError(`${file}: unsupported model_type ${JSON.stringify(top.model_type)} (this package implements "qwen2_vl")`, {
      code: "UNSUPPORTED_MODEL_TYPE",
      details: { file, field: "model_type", value: top.model_type },
    });
  }
  const text: Json = typeof top.text_config === "object" && top.text_config !== null ? { ...top, ...(top.text_config as Json) } : top;
  const hiddenSize = num(text, "hidden_size", 8192, file);
  const numAttentionHeads = num(text, "num_attention_heads", 64, file);
  const numKeyValueHeads = num(text, "num_key_value_heads", 8, file);
  if (hiddenSize % numAttentionHeads !== 0) {
    throw new ModelConfigError(`${file}: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numAttentionHeads}`, {
      code: "CONFIG_FIELD",
      details: { file, field: "num_attention_heads" },
    });
  }
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw new ModelConfigError(`${file}: num_attention_heads ${numAttentionHeads} is not a multiple of num_key_value_heads ${numKeyValueHeads}`, {
      code: "CONFIG_FIELD",
      details: { file, field: "num_key_value_heads" },
    });
  }
  const headDim = hiddenSize / numAttentionHeads;
  const rs = (text.rope_scaling ?? null) as Json | null;
  const sec = rs?.mrope_section;
  if (!Array.isArray(sec) || sec.length !== 3 || !sec.every((x) => Number.isInteger(x) && x >= 0)) {
    throw new ModelConfigError(`${file}: rope_scaling.mrope_section must be three non-negative integers, got ${JSON.stringify(sec)}`, {
      code: "CONFIG_FIELD",
      details: { file, field: "rope_scaling.mrope_section" },
    });
  }
  const mropeSection = sec as [number, number, number];
  if (mropeSection[0] + mropeSection[1] + mropeSection[2] !== headDim / 2) {
    throw new ModelConfigError(`${file}: rope_scaling.mrope_section ${JSON.stringify(sec)} must sum to head_dim/2 = ${headDim / 2}`, {
      code: "CONFIG_FIELD",
      details: { file, field: "rope_scaling.mrope_section" },
    });
  }
  const hiddenAct = str(text, "hidden_act", "silu");
  if (hiddenAct !== "silu") {
    throw new ModelConfigError(`${file}: unsupported hidden_act "${hiddenAct}" (Qwen2 uses silu)`, { code: "CONFIG_FIELD", details: { file, field: "hidden_act" } });
  }
  const eos = text.eos_token_id;
  const cfg: Qwen2VLConfig = {
    modelType: "qwen2_vl",
    vocabSize: num(text, "vocab_size", 152064, file),
    hiddenSize,
    intermediateSize: num(text, "intermediate_size", 29568, file),
    numHiddenLayers: num(text, "num_hidden_layers", 80, file),
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    hiddenAct,
    maxPositionEmbeddings: num(text, "max_position_embeddings", 32768, file),
    rmsNormEps: num(text, "rms_norm_eps", 1e-5, file, false),
    ropeTheta: num(text, "rope_theta", 1_000_000, file, false),
    mropeSection,
    tieWordEmbeddings: typeof top.tie_word_embeddings === "boolean" ? top.tie_word_embeddings : false,
    imageTokenId: num(top, "image_token_id", 151655, file),
    videoTokenId: num(top, "video_token_id", 151656, file),
    visionStartTokenId: num(top, "vision_start_token_id", 151652, file),
    visionEndTokenId: num(top, "vision_end_token_id", 151653, file),
    bosTokenId: num(text, "bos_token_id", 151643, file),
    eosTokenId: Array.isArray(eos) ? (eos as number[]) : typeof eos === "number" ? eos : 151645,
    visionConfig: parseVisionConfig((top.vision_config ?? {}) as Json, file),
  };
  if (cfg.visionConfig.hiddenSize !== cfg.hiddenSize) {
    throw new ModelConfigError(`${file}: vision_config.hidden_size ${cfg.visionConfig.hiddenSize} must equal hidden_size ${cfg.hiddenSize}`, {
      code: "CONFIG_FIELD",
      details: { file, field: "vision_config.hidden_size" },
    });
  }
  return cfg;
}

/** Reads and parses `<dir>/config.json` (or a config.json path). */
export function loadQwen2VLConfig(dirOrFile: string): Qwen2VLConfig {
  const file = dirOrFile.endsWith(".json") ? dirOrFile : path.join(dirOrFile, "config.json");
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ModelConfigError(`${file}: cannot read config: ${(e as Error).message}`, { code: "CONFIG_IO", details: { file }, cause: e });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ModelConfigError(`${file}: not valid JSON: ${(e as Error).message}`, { code: "CONFIG_JSON", details: { file }, cause: e });
  }
  return parseQwen2VLConfig(raw, file);
}

/**
 * config.json of Qwen/Qwen2-VL-2B-Instruct exactly as published on the hub: the paper's base model.
 * Used by the 2B benchmark, dry-run estimates and tests that need real-size shapes without the weights.
 */
export const QWEN2_VL_2B_INSTRUCT_CONFIG = {
  architectures: ["Qwen2VLForConditionalGeneration"],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  vision_start_token_id: 151652,
  vision_end_token_id: 151653,
  vision_token_id: 151654,
  image_token_id: 151655,
  video_token_id: 151656,
  hidden_act: "silu",
  hidden_size: 1536,
  initializer_range: 0.02,
  intermediate_size: 8960,
  max_position_embeddings: 32768,
  max_window_layers: 28,
  model_type: "qwen2_vl",
  num_attention_heads: 12,
  num_hidden_layers: 28,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.41.2",
  use_cache: true,
  use_sliding_window: false,
  vision_config: {
    depth: 32,
    embed_dim: 1280,
    mlp_ratio: 4,
    num_heads: 16,
    in_chans: 3,
    hidden_size: 1536,
    patch_size: 14,
    spatial_merge_size: 2,
    spatial_patch_size: 14,
    temporal_patch_size: 2,
  },
  rope_scaling: { type: "mrope", mrope_section: [16, 24, 24] },
  vocab_size: 151936,
};
