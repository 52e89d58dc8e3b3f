/**
 * Random Qwen2-VL weights for benchmarks: an in-memory TensorSource (no file) that produces every weight the config
 * needs, deterministic from a seed, so `buildQwen2VLFromSource` loads it exactly like a checkpoint.
 */
import { Rng, type TensorData, type TensorInfo, type TensorSource } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { buildQwen2VLFromSource, expectedWeights, parseQwen2VLConfig, type Qwen2VLConfig } from "../src/qwen2_vl/index";

/** xorshift32 uniform in [-1, 1) scaled so the std is `std` (uniform: std = a/√3). */
function fill(n: number, seed: number, std: number, mean = 0): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const a = std * Math.sqrt(3);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = mean + a * ((s / 4294967296) * 2 - 1);
  }
  return out;
}

export function randomSource(cfg: Qwen2VLConfig, seed = 1): TensorSource {
  const shapes = expectedWeights(cfg);
  const names = [...shapes.keys()].sort();
  const info = (name: string): TensorInfo => {
    const shape = shapes.get(name);
    if (!shape) throw new Error(`no tensor ${name}`);
    return { dtype: "F32", shape: [...shape], byteLength: shape.reduce((a, b) => a * b, 1) * 4 };
  };
  return {
    path: "<random>",
    metadata: {},
    keys: () => [...names],
    has: (n) => shapes.has(n),
    info,
    read(name: string): TensorData {
      const i = info(name);
      const n = i.byteLength / 4;
      const idx = names.indexOf(name);
      const isNorm = /norm|ln_q/.test(name) && name.endsWith(".weight");
      const isBias = name.endsWith(".bias");
      const data = isNorm ? fill(n, seed + idx * 7919, 0.02, 1) : fill(n, seed + idx * 7919, isBias ? 0.01 : 0.02);
      return { dtype: "F32", shape: i.shape, data };
    },
    readRaw(name: string): Uint8Array {
      const d = this.read(name).data as Float32Array;
      return new Uint8Array(d.buffer);
    },
    close() {},
  };
}

/** The issue-3 bench config: Qwen2-VL shape, ~107M parameters. */
export function benchConfigJson(): Record<string, unknown> {
  return {
    model_type: "qwen2_vl",
    vocab_size: 151936,
    hidden_size: 512,
    intermediate_size: 1536,
    num_hidden_layers: 8,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000.0,
    max_position_embeddings: 32768,
    tie_word_embeddings: true,
    rope_scaling: { type: "mrope", mrope_section: [8, 12, 12] },
    image_token_id: 151655,
    video_token_id: 151656,
    vision_start_token_id: 151652,
    vision_end_token_id: 151653,
    vision_config: {
      depth: 4,
      embed_dim: 256,
      mlp_ratio: 4,
      num_heads: 4,
      in_chans: 3,
      hidden_size: 512,
      hidden_act: "quick_gelu",
      patch_size: 14,
      spatial_merge_size: 2,
      temporal_patch_size: 2,
    },
  };
}

/**
 * The issue-3 bench prompt's ids: 20 text tokens, <|vision_start|>, `imageTokens` <|image_pad|> (64 for one 224x224
 * image: grid 1x16x16 = 256 patches, merged 2x2), <|vision_end|>, then text up to `length` tokens.
 */
export function benchPromptIds(cfg: Qwen2VLConfig, imageTokens = 64, length = 256): number[] {
  const ids: number[] = [];
  for (let i = 0; i < 20; i++) ids.push(1000 + i);
  ids.push(cfg.visionStartTokenId);
  for (let i = 0; i < imageTokens; i++) ids.push(cfg.imageTokenId);
  ids.push(cfg.visionEndTokenId);
  while (ids.length < length) ids.push(2000 + ids.length);
  return ids;
}

/**
 * The issue-3 bench prompt (benchPromptIds) with N(0,1) pixel values drawn from `rng`. Default: a 224x224 image (1x16x16
 * patch grid, 64 image tokens) in a 256-token prompt. `side` (a multiple of 28) sets the image, `length` the whole
 * prompt: issue 14's 2B step uses a 448x448 image (256 image tokens) with 256 text tokens, length 512.
 */
export function benchImagePrompt(
  cfg: Qwen2VLConfig,
  rng: Rng,
  opts: { side?: number; length?: number } = {},
): { inputIds: number[]; pixelValues: Float32Array; imageGridThw: number[][] } {
  const side = opts.side ?? 224;
  if (side % 28 !== 0) throw new RangeError(`benchImagePrompt: side ${side} is not a multiple of 28`);
  const g = side / 14;
  const imageTokens = (g / 2) ** 2;
  const pixelValues = Float32Array.from({ length: g * g * 1176 }, () => rng.normal());
  return { inputIds: benchPromptIds(cfg, imageTokens, opts.length ?? 256), pixelValues, imageGridThw: [[1, g, g]] };
}


/**
 * The decode profilers' setup: the bench-config model with random weights (seed 7) and a 256-token text prompt
 * prefilled with a cache (logits disposed; the caller owns `pre.pastKeyValues`).
 */
export function benchDecodeSetup() {
  const cfg = parseQwen2VLConfig(benchConfigJson(), "<bench config>");
  const model = buildQwen2VLFromSource(cfg, randomSource(cfg, 7));
  const ids = Array.from({ length: 256 }, (_, i) => 2000 + i);
  const inp = tf.tensor2d([ids], [1, 256], "int32");
  const pre = model.forward({ inputIds: inp, useCache: true, logitsToKeep: 1 });
  pre.logits.dispose();
  inp.dispose();
  return { cfg, model, pre };
}
