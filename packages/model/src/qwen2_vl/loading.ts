import {
  checkFitsGpuMemory,
  GPU_MEMORY_MARGIN_BYTES,
  getWebgpuInfo,
  gpuMemoryBudget,
  openCheckpoint,
  RarlError,
  type TensorSource,
  WebgpuUploadChecks,
  webgpuBindingLimit,
} from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { type HostWeight, Linear } from "../nn/linear";
import { VocabChunks, vocabChunkRows } from "../nn/vocab_chunks";
import { loadQwen2VLConfig, type Qwen2VLConfig } from "./config";
import { type DecoderLayerWeights, Qwen2VLTextModel } from "./language";
import { Qwen2VLForConditionalGeneration } from "./model";
import { Qwen2VLProcessor } from "./processor";
import { Qwen2VisionTransformerPretrainedModel, type VisionBlockWeights } from "./vision";

/**
 * A checkpoint's weights do not fit the config: `details.missing`, `details.unexpected` and `details.badShape`
 * list every offending key (hub names), `details.file` the checkpoint.
 */
export class CheckpointError extends RarlError {}

/** Options of {@link loadQwen2VL}. */
export interface LoadQwen2VLOptions {
  /** tokenizer.json (or a folder holding it) to use instead of `<dir>/tokenizer.json`. Default: the checkpoint's. */
  tokenizerPath?: string;
  /** Load the processor too (preprocessor_config.json, tokenizer, chat template). Default true. */
  loadProcessor?: boolean;
  /**
   * Where the large frozen weights live. "device" (default): every weight is a tfjs tensor on the active backend.
   * "host": every Linear weight, embed_tokens and lm_head stay in host memory (JS Float32Arrays) and are uploaded
   * per layer while a forward pass uses them (norms and biases stay on the device). For models larger than the
   * ~4 GiB wasm heap (Qwen2-VL-2B is 8.8 GB in float32). LoRA merge and the generation helpers that read
   * `lmHead`/`embedTokens` directly need "device".
   */
  weightResidency?: "device" | "host";
  /**
   * Largest embed_tokens / lm_head chunk in bytes (device residency). A vocabulary matrix larger than this is
   * uploaded as row chunks (VocabChunks) and gathered / multiplied per chunk. Default: on webgpu the adapter's
   * maxStorageBufferBindingSize (webgpuBindingLimit), elsewhere no chunking; RARL_VOCAB_CHUNK_BYTES overrides the
   * default (tests force small chunks on the tiny model).
   */
  vocabChunkBytes?: number;
  /**
   * GPU memory budget in bytes for the up-front fit check (webgpu, device residency). Default: RARL_GPU_MEMORY_GIB,
   * else the adapter's memory heaps where the `webgpu` package exposes them (0.6.2 does not), else unchecked.
   */
  gpuMemoryBytes?: number;
  /** Room kept free beside the weights in that check. Default GPU_MEMORY_MARGIN_BYTES (1 GiB). */
  gpuMemoryMarginBytes?: number;
}

/** The default of {@link LoadQwen2VLOptions.vocabChunkBytes} for the active backend. */
export function defaultVocabChunkBytes(): number {
  const env = Number(process.env.RARL_VOCAB_CHUNK_BYTES ?? Number.NaN);
  if (Number.isFinite(env) && env > 0) return env;
  return tf.getBackend() === "webgpu" ? webgpuBindingLimit() : Number.POSITIVE_INFINITY;
}

/** Result of {@link loadQwen2VL}. */
export interface LoadedQwen2VL {
  config: Qwen2VLConfig;
  model: Qwen2VLForConditionalGeneration;
  /** null when `loadProcessor: false`. */
  processor: Qwen2VLProcessor | null;
}

/**
 * Maps a checkpoint key to hub naming: transformers >= 4.52 saves `model.language_model.*` and `model.visual.*`
 * (see the fixture's key_map_transformers_ge_4_52.json); hub files use `model.*` and `visual.*`.
 */
export function normalizeKey(key: string): string {
  if (key.startsWith("model.language_model.")) return `model.${key.slice("model.language_model.".length)}`;
  if (key.startsWith("model.visual.")) return `visual.${key.slice("model.visual.".length)}`;
  return key;
}

/** Every weight the config needs, hub names -> shape. */
export function expectedWeights(cfg: Qwen2VLConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const H = cfg.hiddenSize;
  const D = cfg.headDim;
  m.set("model.embed_tokens.weight", [cfg.vocabSize, H]);
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(`${p}input_layernorm.weight`, [H]);
    m.set(`${p}post_attention_layernorm.weight`, [H]);
    m.set(`${p}self_attn.q_proj.weight`, [cfg.numAttentionHeads * D, H]);
    m.set(`${p}self_attn.q_proj.bias`, [cfg.numAttentionHeads * D]);
    m.set(`${p}self_attn.k_proj.weight`, [cfg.numKeyValueHeads * D, H]);
    m.set(`${p}self_attn.k_proj.bias`, [cfg.numKeyValueHeads * D]);
    m.set(`${p}self_attn.v_proj.weight`, [cfg.numKeyValueHeads * D, H]);
    m.set(`${p}self_attn.v_proj.bias`, [cfg.numKeyValueHeads * D]);
    m.set(`${p}self_attn.o_proj.weight`, [H, cfg.numAttentionHeads * D]);
    m.set(`${p}mlp.gate_proj.weight`, [cfg.intermediateSize, H]);
    m.set(`${p}mlp.up_proj.weight`, [cfg.intermediateSize, H]);
    m.set(`${p}mlp.down_proj.weight`, [H, cfg.intermediateSize]);
  }
  m.set("model.norm.weight", [H]);
  if (!cfg.tieWordEmbeddings) m.set("lm_head.weight", [cfg.vocabSize, H]);
  const v = cfg.visionConfig;
  const E = v.embedDim;
  const F = Math.trunc(E * v.mlpRatio);
  const M = E * v.spatialMergeSize ** 2;
  m.set("visual.patch_embed.proj.weight", [E, v.inChannels, v.temporalPatchSize, v.patchSize, v.patchSize]);
  for (let i = 0; i < v.depth; i++) {
    const p = `visual.blocks.${i}.`;
    for (const n of ["norm1", "norm2"]) {
      m.set(`${p}${n}.weight`, [E]);
      m.set(`${p}${n}.bias`, [E]);
    }
    m.set(`${p}attn.qkv.weight`, [3 * E, E]);
    m.set(`${p}attn.qkv.bias`, [3 * E]);
    m.set(`${p}attn.proj.weight`, [E, E]);
    m.set(`${p}attn.proj.bias`, [E]);
    m.set(`${p}mlp.fc1.weight`, [F, E]);
    m.set(`${p}mlp.fc1.bias`, [F]);
    m.set(`${p}mlp.fc2.weight`, [E, F]);
    m.set(`${p}mlp.fc2.bias`, [E]);
  }
  m.set("visual.merger.ln_q.weight", [E]);
  m.set("visual.merger.ln_q.bias", [E]);
  m.set("visual.merger.mlp.0.weight", [M, M]);
  m.set("visual.merger.mlp.0.bias", [M]);
  m.set("visual.merger.mlp.2.weight", [cfg.hiddenSize, M]);
  m.set("visual.merger.mlp.2.bias", [cfg.hiddenSize]);
  return m;
}

const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Options of {@link buildQwen2VLFromSource}. */
export interface BuildQwen2VLOptions {
  weightResidency?: "device" | "host";
  vocabChunkBytes?: number;
  gpuMemoryBytes?: number;
  gpuMemoryMarginBytes?: number;
  /**
   * Uploads each weight at once inside WebGPU error scopes, named by its hub key (webgpu only); the caller awaits
   * `uploads.done()` (loadQwen2VL does) and gets a GpuMemoryError naming the tensor a refused buffer held.
   * Without it uploads stay lazy and a refused buffer surfaces as a WebgpuDeviceError at the next read-back.
   */
  uploads?: WebgpuUploadChecks;
}

/**
 * Builds the model from an open checkpoint. Validates every key first (one CheckpointError listing all missing,
 * unexpected and wrongly shaped keys); on webgpu with device residency, checks that the float32 weights plus a
 * margin fit the GPU memory budget when one is known (GpuMemoryError GPU_MODEL_TOO_BIG naming the first tensor past
 * it, before anything is uploaded); then reads the tensors one at a time, uploading each to the backend before
 * reading the next, so the host never holds more than one decoded tensor (BF16/F16 are widened to float32 by the
 * reader). A tied lm_head reuses embed_tokens (one copy).
 */
export function buildQwen2VLFromSource(cfg: Qwen2VLConfig, source: TensorSource, opts: BuildQwen2VLOptions = {}): Qwen2VLForConditionalGeneration {
  const host = opts.weightResidency === "host";
  const chunkBytes = opts.vocabChunkBytes ?? defaultVocabChunkBytes();
  const chunkRows = vocabChunkRows(cfg.hiddenSize, chunkBytes);
  const expected = expectedWeights(cfg);
  const fileKey = new Map<string, string>(); // hub name -> file key
  const unexpected: string[] = [];
  const duplicate: string[] = [];
  for (const k of source.keys()) {
    const n = normalizeKey(k);
    if (n === "lm_head.weight" && cfg.tieWordEmbeddings) continue; // tied: transformers ignores a stored copy too
    if (!expected.has(n)) {
      unexpected.push(k);
      continue;
    }
    if (fileKey.has(n)) duplicate.push(`${fileKey.get(n)} / ${k}`);
    fileKey.set(n, k);
  }
  const missing: string[] = [];
  const badShape: string[] = [];
  for (const [n, shape] of expected) {
    const k = fileKey.get(n);
    if (k === undefined) {
      missing.push(n);
      continue;
    }
    const info = source.info(k);
    if (!sameShape(info.shape, shape)) badShape.push(`${k}: [${info.shape.join(", ")}], expected [${shape.join(", ")}]`);
    else if (!["F32", "F16", "BF16"].includes(info.dtype)) badShape.push(`${k}: dtype ${info.dtype}, expected F32, F16 or BF16`);
  }
  if (missing.length || unexpected.length || badShape.length || duplicate.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing keys (${missing.length}): ${missing.join(", ")}`);
    if (unexpected.length) parts.push(`unexpected keys (${unexpected.length}): ${unexpected.join(", ")}`);
    if (badShape.length) parts.push(`wrongly shaped keys (${badShape.length}): ${badShape.join("; ")}`);
    if (duplicate.length) parts.push(`keys present under both namings: ${duplicate.join(", ")}`);
    throw new CheckpointError(`${source.path}: checkpoint does not match config.json: ${parts.join(" | ")}`, {
      code: "CHECKPOINT_KEYS",
      details: { file: source.path, missing, unexpected, badShape, duplicate },
    });
  }
  if (!host && tf.getBackend() === "webgpu") {
    const budget = gpuMemoryBudget({ bytes: opts.gpuMemoryBytes, heaps: getWebgpuInfo()?.memoryHeaps });
    if (budget) {
      const sizes = [...expected].map(([n, shape]) => [n, shape.reduce((a, b) => a * b, 1) * 4] as const);
      checkFitsGpuMemory(sizes, budget, opts.gpuMemoryMarginBytes ?? GPU_MEMORY_MARGIN_BYTES, `${source.path}: the model`);
    }
  }
  const created: tf.Tensor[] = [];
  const get = <T extends tf.Tensor>(n: string, reshape?: number[]): T => {
    const k = fileKey.get(n)!;
    const t = source.read(k);
    const tensor = tf.tensor(t.data as Float32Array, reshape ?? t.shape, "float32") as T;
    created.push(tensor);
    opts.uploads?.upload(n, tensor);
    return tensor;
  };
  const getHost = (n: string, shape2d: [number, number]): HostWeight => ({ data: source.read(fileKey.get(n)!).data as Float32Array, shape: shape2d });
  const shape2 = (n: string): [number, number] => {
    const s = expected.get(n)!;
    return [s[0], s.slice(1).reduce((a, b) => a * b, 1)];
  };
  try {
    const lin = (p: string, bias: boolean, reshape?: number[]) => {
      if (host) return Linear.fromHost(getHost(`${p}.weight`, shape2(`${p}.weight`)), bias ? get<tf.Tensor1D>(`${p}.bias`) : null);
      return new Linear(get<tf.Tensor2D>(`${p}.weight`, reshape), bias ? get<tf.Tensor1D>(`${p}.bias`) : null);
    };
    const layers: DecoderLayerWeights[] = [];
    const embedTokensHost = host ? getHost("model.embed_tokens.weight", shape2("model.embed_tokens.weight")) : null;
    const chunked = (n: string): VocabChunks | null => {
      if (host || shape2(n)[0] <= chunkRows) return null;
      const c = VocabChunks.fromHost(source.read(fileKey.get(n)!).data as Float32Array, shape2(n), chunkRows);
      created.push(...c.chunks);
      c.chunks.forEach((t, i) => {
        opts.uploads?.upload(`${n} rows ${i * chunkRows}..${i * chunkRows + t.shape[0] - 1}`, t);
      });
      return c;
    };
    const embedChunks = chunked("model.embed_tokens.weight");
    const embedTokens = host || embedChunks ? (tf.zeros([0, cfg.hiddenSize]) as tf.Tensor2D) : get<tf.Tensor2D>("model.embed_tokens.weight");
    if (host || embedChunks) created.push(embedTokens);
    for (let i = 0; i < cfg.numHiddenLayers; i++) {
      const p = `model.layers.${i}.`;
      layers.push({
        inputLayernorm: get(`${p}input_layernorm.weight`),
        postAttentionLayernorm: get(`${p}post_attention_layernorm.weight`),
        qProj: lin(`${p}self_attn.q_proj`, true),
        kProj: lin(`${p}self_attn.k_proj`, true),
        vProj: lin(`${p}self_attn.v_proj`, true),
        oProj: lin(`${p}self_attn.o_proj`, false),
        gateProj: lin(`${p}mlp.gate_proj`, false),
        upProj: lin(`${p}mlp.up_proj`, false),
        downProj: lin(`${p}mlp.down_proj`, false),
      });
    }
    const norm = get<tf.Tensor1D>("model.norm.weight");
    const lmHeadHost = !cfg.tieWordEmbeddings && host ? getHost("lm_head.weight", shape2("lm_head.weight")) : null;
    const lmHeadChunks = cfg.tieWordEmbeddings ? null : chunked("lm_head.weight");
    const lmHead = cfg.tieWordEmbeddings || host || lmHeadChunks ? null : get<tf.Tensor2D>("lm_head.weight");
    const v = cfg.visionConfig;
    const E = v.embedDim;
    const patchEmbed = lin("visual.patch_embed.proj", false, [E, v.inChannels * v.temporalPatchSize * v.patchSize * v.patchSize]);
    const blocks: VisionBlockWeights[] = [];
    for (let i = 0; i < v.depth; i++) {
      const p = `visual.blocks.${i}.`;
      blocks.push({
        norm1: { weight: get(`${p}norm1.weight`), bias: get(`${p}norm1.bias`) },
        norm2: { weight: get(`${p}norm2.weight`), bias: get(`${p}norm2.bias`) },
        qkv: lin(`${p}attn.qkv`, true),
        proj: lin(`${p}attn.proj`, true),
        fc1: lin(`${p}mlp.fc1`, true),
        fc2: lin(`${p}mlp.fc2`, true),
      });
    }
    const visual = new Qwen2VisionTransformerPretrainedModel(v, {
      patchEmbed,
      blocks,
      lnQ: { weight: get("visual.merger.ln_q.weight"), bias: get("visual.merger.ln_q.bias") },
      mlp0: lin("visual.merger.mlp.0", true),
      mlp2: lin("visual.merger.mlp.2", true),
    });
    const text = new Qwen2VLTextModel(cfg, { embedTokens, layers, norm, lmHead, embedTokensHost, lmHeadHost, embedChunks, lmHeadChunks });
    return new Qwen2VLForConditionalGeneration(cfg, visual, text);
  } catch (e) {
    for (const t of created) t.dispose();
    throw e;
  }
}

/**
 * Loads a Hugging Face Qwen2-VL checkpoint folder: config.json, model.safetensors or model.safetensors.index.json
 * shards (hub or transformers >= 4.52 key names; BF16/F16/F32), and the processor (preprocessor_config.json,
 * tokenizer.json, chat template). Throws ModelConfigError / SafetensorsError / CheckpointError / ProcessorError, and
 * on webgpu GpuMemoryError when the model does not fit the GPU memory budget or the device refuses a weight's buffer
 * (nothing stays allocated then).
 */
export async function loadQwen2VL(dir: string, opts: LoadQwen2VLOptions = {}): Promise<LoadedQwen2VL> {
  const config = loadQwen2VLConfig(dir);
  const processor = opts.loadProcessor === false ? null : Qwen2VLProcessor.fromPretrained(dir, { tokenizerPath: opts.tokenizerPath });
  const source = openCheckpoint(dir);
  try {
    const uploads = new WebgpuUploadChecks();
    const model = buildQwen2VLFromSource(config, source, {
      weightResidency: opts.weightResidency,
      vocabChunkBytes: opts.vocabChunkBytes,
      gpuMemoryBytes: opts.gpuMemoryBytes,
      gpuMemoryMarginBytes: opts.gpuMemoryMarginBytes,
      uploads,
    });
    try {
      await uploads.done();
    } catch (e) {
      model.dispose();
      throw e;
    }
    return { config, model, processor };
  } finally {
    source.close();
  }
}
