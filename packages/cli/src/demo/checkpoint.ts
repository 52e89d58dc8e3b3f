import fs from "node:fs";
import path from "node:path";
import { Rng, writeFileAtomic, writeSafetensors } from "@rarl/core";
import { expectedWeights, parseQwen2VLConfig, QWEN2_VL_2B_INSTRUCT_CONFIG } from "@rarl/model";

/** Tokenizer/processor files a model folder needs besides config.json and the weights. */
export const TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.json", "preprocessor_config.json", "generation_config.json"] as const;

/**
 * The demo's tiny Qwen2-VL-architecture config (tied embeddings): hidden 128, 2 decoder layers (4 query / 2 KV heads
 * of 32), a 1-block vision tower of width 32. A 56×56 image gives 4×4 patches and 4 merged image tokens. The config
 * keeps Qwen2-VL's 151,936-id vocabulary; the demo cuts it down to its own tokens with `configForTrimmedVocab` (./vocab.ts)
 * (664 ids for the demo's data), which leaves about 0.56M parameters.
 */
export function demoModelConfig(): Record<string, unknown> {
  // Qwen2-VL-2B-Instruct's hub config (token ids, rope theta, norms...) with the sizes shrunk.
  return {
    ...QWEN2_VL_2B_INSTRUCT_CONFIG,
    hidden_size: 128,
    intermediate_size: 384,
    max_window_layers: 2,
    num_attention_heads: 4,
    num_hidden_layers: 2,
    num_key_value_heads: 2,
    torch_dtype: "float32",
    rope_scaling: { type: "mrope", mrope_section: [4, 6, 6] },
    vision_config: {
      ...QWEN2_VL_2B_INSTRUCT_CONFIG.vision_config,
      depth: 1,
      embed_dim: 32,
      num_heads: 2,
      hidden_size: 128,
      hidden_act: "quick_gelu",
    },
  };
}

/** Options of {@link writeRandomCheckpoint}. */
export interface RandomCheckpointOptions {
  /** Seed of the weights. Default 0. */
  seed?: number;
  /** Folder with the tokenizer/processor files to copy in (see TOKENIZER_FILES; missing optional ones are skipped). */
  tokenizerDir?: string;
  /** Std of the normal init of every matrix (transformers' initializer_range). Default: config.initializer_range ?? 0.02. */
  std?: number;
  /**
   * Std of the (tied) token embedding. Default 0.35: the demo keeps the embedding frozen, and an RMS-normed hidden
   * state aligned with one row of an N(0, 0.35²) embedding gives that token a logit of about 0.35·d (45 at hidden 128)
   * against N(0, (0.35·√d)²) (std 4) for the others, so a frozen random embedding can be decoded with confidence
   * (with 0.02 the final-norm weights would have to grow ~17x first).
   */
  embedStd?: number;
}

/**
 * Writes a Hugging Face Qwen2-VL model folder with random weights for `configJson`: config.json,
 * model.safetensors (F32; matrices ~ N(0, std²) as transformers' _init_weights, norms 1, biases 0) and the
 * tokenizer files. Loadable with @rarl/model's loadQwen2VL.
 */
export function writeRandomCheckpoint(dir: string, configJson: Record<string, unknown>, opts: RandomCheckpointOptions = {}): void {
  const cfg = parseQwen2VLConfig(configJson);
  const std = opts.std ?? (typeof configJson.initializer_range === "number" ? configJson.initializer_range : 0.02);
  const rng = new Rng(opts.seed ?? 0);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  const shapes = expectedWeights(cfg);
  for (const name of [...shapes.keys()].sort()) {
    const shape = shapes.get(name) as number[];
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isNorm = /norm|ln_q/.test(name) && name.endsWith(".weight");
    if (isNorm) data.fill(1);
    else if (!name.endsWith(".bias")) {
      const sd = name === "model.embed_tokens.weight" || name === "lm_head.weight" ? (opts.embedStd ?? 0.35) : std;
      for (let i = 0; i < n; i++) data[i] = rng.normal() * sd;
    }
    tensors[name] = { dtype: "F32", shape, data };
  }
  fs.mkdirSync(dir, { recursive: true });
  if (opts.tokenizerDir) {
    for (const f of TOKENIZER_FILES) {
      const src = path.join(opts.tokenizerDir, f);
      if (fs.existsSync(src)) writeFileAtomic(path.join(dir, f), fs.readFileSync(src));
    }
  }
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  writeFileAtomic(path.join(dir, "config.json"), `${JSON.stringify(configJson, null, 2)}\n`);
}
