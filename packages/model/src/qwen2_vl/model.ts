import * as tf from "@tensorflow/tfjs-core";
import { fusedAttentionAvailable, RarlError } from "@rarl/core";
import type { Linear } from "../nn/linear";
import type { Qwen2VLConfig } from "./config";
import { checkpointedDecoderLayer } from "./checkpointed_layer";
import { buildAttentionMask, type LayerKV, type PromptRows, type Qwen2VLTextModel, type SharedLayerKV } from "./language";
import { decodePositions, getRopeIndex, mropeCosSinTensors } from "./rope";
import type { Qwen2VisionTransformerPretrainedModel, VisionIntermediates } from "./vision";

/** Bad input to the model's forward pass (shapes, image slots, sequence length...). `details` names the field. */
export class ModelInputError extends RarlError {}

/**
 * Shared prompt positions of a {@link KVCache} (made by {@link shareCache}): the keys/values of P prompts, stored
 * once per prompt, that several cache rows (e.g. the G samples of a prompt) attend to.
 */
export interface SharedPrefix {
  /**
   * Per layer: per prompt and kv head, K transposed [headDim, Tp] and V [Tp, headDim]; on webgpu instead one
   * [P, kvHeads, Tp, headDim] K and V per layer (`stacked`, what @rarl/core's fused attention kernel reads).
   */
  layers: SharedLayerKV[];
  /** Tp, the number of shared positions (the first Tp positions of every row). */
  length: number;
  /** Per cache row, the index of the prompt whose shared positions it continues. */
  rowPrompt: number[];
}

/**
 * Key/value cache of the decoder (transformers' DynamicCache, functional flavour).
 * - `layers[i].k` / `.v`: [B, numKVHeads, T, headDim] (keys after RoPE); with a `prefix`, only the positions
 *   after the shared ones, [B, numKVHeads, T - prefix.length, headDim] (`layers` is empty until the first step).
 * - `length`: T, the number of cached positions (padding included; shared positions included).
 * - `ropeDeltas`: per row, so that a token at cache position c gets M-RoPE position c + ropeDeltas[b] (3 rows).
 * - `attentionMask`: [B][T] of 0/1 for the cached positions (left padding = 0).
 * - `prefix`: shared prompt positions (see {@link shareCache}) or null.
 *
 * `forward({ pastKeyValues: cache, ... })` appends the new positions to this object in place (old tensors are
 * disposed) and returns it as `pastKeyValues`. Call `dispose()` when done.
 */
export class KVCache {
  constructor(
    public layers: LayerKV[],
    public length: number,
    public ropeDeltas: number[],
    public attentionMask: number[][],
    public prefix: SharedPrefix | null = null,
  ) {}

  /** Batch size. */
  get batchSize(): number {
    return this.ropeDeltas.length;
  }

  /** Disposes every cached tensor; the cache is empty afterwards. */
  dispose(): void {
    for (const l of this.layers) {
      l.k.dispose();
      l.v.dispose();
    }
    if (this.prefix) for (const l of this.prefix.layers) tf.dispose([...l.kT.flat(), ...l.v.flat(), ...(l.stacked ? [l.stacked.k, l.stacked.v] : [])]);
    this.layers = [];
    this.prefix = null;
    this.length = 0;
  }

  /** A deep copy (new tensors). */
  clone(): KVCache {
    const p = this.prefix;
    return new KVCache(
      this.layers.map((l) => ({ k: l.k.clone(), v: l.v.clone() })),
      this.length,
      [...this.ropeDeltas],
      this.attentionMask.map((r) => [...r]),
      p && {
        layers: p.layers.map((l) => ({
          kT: l.kT.map((r) => r.map((t) => t.clone())),
          v: l.v.map((r) => r.map((t) => t.clone())),
          stacked: l.stacked && { k: l.stacked.k.clone(), v: l.stacked.v.clone() },
        })),
        length: p.length,
        rowPrompt: [...p.rowPrompt],
      },
    );
  }

  /** Keeps only the rows `keep` (indices into the current rows, in that order), in place; dropped rows' tensors are freed. */
  keepRows(keep: number[]): void {
    const layers = gatherRows(this.layers, keep);
    for (const l of this.layers) {
      l.k.dispose();
      l.v.dispose();
    }
    this.layers = layers;
    if (this.prefix) this.prefix.rowPrompt = keep.map((a) => this.prefix!.rowPrompt[a]);
    this.ropeDeltas = keep.map((a) => this.ropeDeltas[a]);
    this.attentionMask = keep.map((a) => this.attentionMask[a]);
  }

  /** Consecutive row ranges of the same prompt (for the shared-prefix attention); [] without a prefix. */
  promptRows(): PromptRows[] {
    const out: PromptRows[] = [];
    const rp = this.prefix?.rowPrompt ?? [];
    rp.forEach((p, b) => {
      const last = out[out.length - 1];
      if (last && last.prompt === p) last.count++;
      else out.push({ prompt: p, start: b, count: 1 });
    });
    return out;
  }
}

/** Rows `rows` (indices, repeats allowed) of every layer's K/V, as new tensors. */
function gatherRows(layers: LayerKV[], rows: number[]): LayerKV[] {
  return tf.tidy(() => {
    const ix = tf.tensor1d(rows, "int32");
    return layers.map((l) => ({ k: tf.gather(l.k, ix) as tf.Tensor4D, v: tf.gather(l.v, ix) as tf.Tensor4D }));
  });
}

/** Cache row b·G + g -> prompt row b (repeat_interleave), for {@link tileCache} and {@link shareCache} (`fn`, for errors). */
function repeatedRows(fn: string, cache: KVCache, G: number): number[] {
  if (!Number.isInteger(G) || G < 1) throw new ModelInputError(`${fn}: G must be a positive integer, got ${G}`, { details: { field: "G" } });
  const idx: number[] = [];
  for (let b = 0; b < cache.batchSize; b++) for (let g = 0; g < G; g++) idx.push(b);
  return idx;
}

/**
 * A cache for G samples per prompt that shares the prompt positions instead of copying them: row b·G + g continues
 * prompt b of `cache` (as {@link tileCache}), but the prompt keys/values are kept once per prompt (K transposed,
 * split per kv head) and the rows attend to them with per-prompt 2-D products (shared-prefix attention). Same
 * outputs as the tiled cache up to float summation order; memory and per-step work for the prompt part do not
 * grow with G. `cache` (a plain cache, no prefix) is not modified. Where @rarl/core's fused attention runs
 * (webgpu), the prompt keys/values stay stacked per layer ([P, kvHeads, Tp, headDim], as the cache holds them)
 * and the rows attend to them inside the fused kernel.
 */
export function shareCache(cache: KVCache, G: number): KVCache {
  const idx = repeatedRows("shareCache", cache, G);
  if (cache.prefix) throw new ModelInputError("shareCache: the cache already has a shared prefix", { details: { field: "pastKeyValues" } });
  const layers: SharedLayerKV[] = fusedAttentionAvailable()
    ? cache.layers.map((l) => ({ kT: [], v: [], stacked: { k: l.k.clone(), v: l.v.clone() } }))
    : tf.tidy(() =>
        cache.layers.map((l) => {
          const kT = tf.unstack(tf.transpose(l.k, [0, 1, 3, 2])).map((kb) => tf.unstack(kb) as tf.Tensor2D[]);
          const v = tf.unstack(l.v).map((vb) => tf.unstack(vb) as tf.Tensor2D[]);
          return { kT, v };
        }),
      );
  return new KVCache(
    [],
    cache.length,
    idx.map((b) => cache.ropeDeltas[b]),
    idx.map((b) => [...cache.attentionMask[b]]),
    { layers, length: cache.length, rowPrompt: idx },
  );
}

/**
 * A new cache whose batch row b·G + g is a copy of row b of `cache` (repeat_interleave along the batch, as
 * `generate(num_return_sequences=G)` expands a prompt), so G samples share one prefill. `cache` is not modified.
 */
export function tileCache(cache: KVCache, G: number): KVCache {
  const idx = repeatedRows("tileCache", cache, G);
  if (cache.prefix) throw new ModelInputError("tileCache: the cache has a shared prefix (use shareCache on a plain cache)", { details: { field: "pastKeyValues" } });
  return new KVCache(
    gatherRows(cache.layers, idx),
    cache.length,
    idx.map((b) => cache.ropeDeltas[b]),
    idx.map((b) => [...cache.attentionMask[b]]),
  );
}

/** Arguments of {@link Qwen2VLForConditionalGeneration.forward}. */
export interface ForwardArgs {
  /** int32 [B, S] token ids (with each image's `<|image_pad|>` tokens already expanded). */
  inputIds: tf.Tensor2D;
  /**
   * [B, S] (or [B, cache + S] with a cache) 0/1 mask, left padding = 0. Default all ones. With a cache and an
   * [B, S] mask, the cache's own mask is prepended.
   */
  attentionMask?: tf.Tensor2D;
  /** [N, C·T·P·P] patches of every image of the batch, in order (processor output). */
  pixelValues?: tf.Tensor2D;
  /** [numImages][3] (t, h, w) in patches, one per image in pixelValues order. Required with pixelValues/imageEmbeds. */
  imageGridThw?: number[][];
  /** Cache from a previous call: only the new tokens are passed; positions = cache.length + i + ropeDeltas. Updated in place. */
  pastKeyValues?: KVCache;
  /** Return a cache (a new one when pastKeyValues is absent). Default false. */
  useCache?: boolean;
  /** Return hiddenStates (L+1 tensors [B, S, H]: embeddings after image scatter, each layer's output, final norm). */
  outputHiddenStates?: boolean;
  /** Precomputed merged image features [numImageTokens, H] (from getImageFeatures), instead of pixelValues. */
  imageEmbeds?: tf.Tensor2D;
  /** Only compute logits for the last k positions (logits [B, k, V]). Default: all positions. */
  logitsToKeep?: number;
  /** Skip the lm_head entirely (logits is then an empty [B, 0, V] tensor); for callers that only need hidden states. */
  skipLogits?: boolean;
  /** Also return vision intermediates (patch_embed, rot_pos_emb, block<i>, merger) when pixelValues is given. */
  outputVisionIntermediates?: boolean;
}

/** Result of {@link Qwen2VLForConditionalGeneration.forward}. The caller owns (disposes) every tensor. */
export interface ForwardOutput {
  /** [B, S or logitsToKeep, V] float32 logits. */
  logits: tf.Tensor3D;
  /** With outputHiddenStates: L+1 tensors [B, S, H]. */
  hiddenStates?: tf.Tensor3D[];
  /** With useCache or pastKeyValues: the (updated) cache. */
  pastKeyValues?: KVCache;
  /** Per row: M-RoPE delta (max position + 1 - S at prefill). */
  ropeDeltas: number[];
  /** [3][B][S] M-RoPE positions used for the new tokens. */
  positionIds: number[][][];
  /** With outputVisionIntermediates and pixelValues. */
  visionIntermediates?: VisionIntermediates;
}

function toRows(t: tf.Tensor2D, what: string): number[][] {
  if (t.rank !== 2) throw new ModelInputError(`${what} must be rank 2 [B, S], got shape [${t.shape}]`, { details: { field: what } });
  return t.arraySync() as number[][];
}

/**
 * Qwen2VLForConditionalGeneration (transformers 4.47): vision tower + Qwen2 decoder + lm_head, with the merged image
 * features scattered into the `<|image_pad|>` slots (several images per prompt, left-padded batches).
 */
export class Qwen2VLForConditionalGeneration {
  /**
   * Activation checkpointing of every decoder layer while a gradient tape records (transformers'
   * `gradient_checkpointing_enable()`; see ./checkpointed_layer.ts): the backward pass recomputes each layer instead
   * of the tape keeping its intermediates. No effect without a tape (inference is unchanged). Default false.
   */
  gradientCheckpointing = false;

  constructor(
    readonly config: Qwen2VLConfig,
    readonly visual: Qwen2VisionTransformerPretrainedModel,
    readonly model: Qwen2VLTextModel,
  ) {}

  /**
   * Every Linear with PEFT/HF module paths (hub naming): `model.layers.<i>.self_attn.{q,k,v,o}_proj`,
   * `model.layers.<i>.mlp.{gate,up,down}_proj`, `visual.blocks.<i>.attn.{qkv,proj}`, `visual.blocks.<i>.mlp.fc{1,2}`,
   * `visual.merger.mlp.{0,2}`. (The Conv3d patch embed and lm_head are not listed.)
   */
  namedLinears(): Map<string, Linear> {
    return new Map([...this.model.namedLinears("model."), ...this.visual.namedLinears("visual.")]);
  }

  /** Merged image embeddings [Σ t·h·w / m², H] for pixelValues [N, C·T·P·P] (every image, in order). */
  getImageFeatures(pixelValues: tf.Tensor2D, imageGridThw: number[][]): tf.Tensor2D {
    try {
      return this.visual.forward(pixelValues, imageGridThw).embeds;
    } catch (e) {
      if (e instanceof RangeError) throw new ModelInputError(e.message, { details: { field: "pixelValues/imageGridThw" }, cause: e });
      throw e;
    }
  }

  /** Runs the model. See {@link ForwardArgs}; every returned tensor belongs to the caller. */
  forward(args: ForwardArgs): ForwardOutput {
    const cfg = this.config;
    const ids = toRows(args.inputIds, "inputIds");
    const B = ids.length;
    const S = B ? ids[0].length : 0;
    if (B === 0 || S === 0) throw new ModelInputError(`inputIds is empty (shape [${args.inputIds.shape}])`, { details: { field: "inputIds" } });
    const past = args.pastKeyValues ?? null;
    if (past && past.batchSize !== B) {
      throw new ModelInputError(`pastKeyValues has batch ${past.batchSize} but inputIds has ${B} rows`, { details: { field: "pastKeyValues" } });
    }
    const pastLen = past?.length ?? 0;
    if (pastLen + S > cfg.maxPositionEmbeddings) {
      throw new ModelInputError(
        `sequence length ${pastLen + S} (cache ${pastLen} + new ${S}) exceeds max_position_embeddings ${cfg.maxPositionEmbeddings}`,
        { code: "SEQUENCE_TOO_LONG", details: { field: "inputIds", length: pastLen + S, max: cfg.maxPositionEmbeddings } },
      );
    }
    for (let b = 0; b < B; b++) {
      for (let s = 0; s < S; s++) {
        const t = ids[b][s];
        if (!Number.isInteger(t) || t < 0 || t >= cfg.vocabSize) {
          throw new ModelInputError(`inputIds[${b}][${s}] = ${t} is outside the vocabulary [0, ${cfg.vocabSize})`, { details: { field: "inputIds", row: b, col: s } });
        }
      }
    }
    // attention mask over all keys (past + new)
    let newMask: number[][];
    let fullMask: number[][];
    if (args.attentionMask) {
      const m = toRows(args.attentionMask, "attentionMask");
      const w = m[0]?.length;
      if (m.length !== B || (w !== S && w !== pastLen + S)) {
        throw new ModelInputError(`attentionMask has shape [${args.attentionMask.shape}], expected [${B}, ${S}] or [${B}, ${pastLen + S}]`, { details: { field: "attentionMask" } });
      }
      if (w === pastLen + S) {
        fullMask = m;
        newMask = m.map((r) => r.slice(pastLen));
      } else {
        newMask = m;
        fullMask = past ? m.map((r, b) => [...past.attentionMask[b], ...r]) : m;
      }
    } else {
      newMask = ids.map((r) => r.map(() => 1));
      fullMask = past ? newMask.map((r, b) => [...past.attentionMask[b], ...r]) : newMask;
    }

    // positions
    const hasImages = !!(args.pixelValues || args.imageEmbeds);
    if (hasImages && !args.imageGridThw) {
      throw new ModelInputError("imageGridThw is required with pixelValues or imageEmbeds", { details: { field: "imageGridThw" } });
    }
    let positionIds: number[][][];
    let ropeDeltas: number[];
    if (!past) {
      const r = getRopeIndex(ids, args.imageGridThw ?? null, args.attentionMask ? newMask : null, cfg);
      positionIds = r.positionIds;
      ropeDeltas = r.ropeDeltas;
    } else {
      ropeDeltas = [...past.ropeDeltas];
      positionIds = decodePositions(pastLen, S, ropeDeltas);
    }

    // image slots
    const slots: number[] = [];
    for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) if (ids[b][s] === cfg.imageTokenId) slots.push(b * S + s);
    if (!hasImages && slots.length > 0) {
      throw new ModelInputError(`inputIds holds ${slots.length} <|image_pad|> tokens but no pixelValues/imageEmbeds were given`, {
        code: "IMAGE_SLOT_MISMATCH",
        details: { field: "pixelValues", tokens: slots.length, features: 0 },
      });
    }

    let visionIntermediates: VisionIntermediates | undefined;
    const wantCache = !!(args.useCache || past);
    const L = cfg.numHiddenLayers;
    const newKV: LayerKV[] = [];
    const result = tf.tidy(() => {
      let embeds = this.model.embed(args.inputIds);
      if (hasImages) {
        let feats: tf.Tensor2D;
        if (args.imageEmbeds) feats = args.imageEmbeds;
        else {
          let vis: ReturnType<Qwen2VisionTransformerPretrainedModel["forward"]>;
          try {
            vis = this.visual.forward(args.pixelValues!, args.imageGridThw!, { intermediates: args.outputVisionIntermediates });
          } catch (e) {
            if (e instanceof RangeError) throw new ModelInputError(e.message, { details: { field: "pixelValues/imageGridThw" }, cause: e });
            throw e;
          }
          feats = vis.embeds;
          visionIntermediates = vis.intermediates;
        }
        if (feats.shape[0] !== slots.length || feats.shape[1] !== cfg.hiddenSize) {
          throw new ModelInputError(
            `image features and image tokens do not match: ${slots.length} <|image_pad|> tokens in inputIds, ${feats.shape[0]} image feature rows (width ${feats.shape[1]}, expected ${cfg.hiddenSize})`,
            { code: "IMAGE_SLOT_MISMATCH", details: { field: "inputIds", tokens: slots.length, features: feats.shape[0] } },
          );
        }
        // masked_scatter as one gather over [text embeddings; image features]
        const flat = tf.reshape(embeds, [B * S, cfg.hiddenSize]);
        const index = new Int32Array(B * S);
        for (let i = 0; i < B * S; i++) index[i] = i;
        slots.forEach((p, k) => {
          index[p] = B * S + k;
        });
        embeds = tf.reshape(tf.gather(tf.concat([flat, feats], 0), tf.tensor1d(index, "int32")), [B, S, cfg.hiddenSize]);
      }
      const { cos, sinSigned } = mropeCosSinTensors(positionIds, cfg.headDim, cfg.ropeTheta, cfg.mropeSection);
      const mask = tf.tensor4d(buildAttentionMask(fullMask, pastLen, S), [B, 1, S, pastLen + S]);
      const hidden: tf.Tensor3D[] = [];
      let h = embeds;
      const rows = past?.prefix ? past.promptRows() : [];
      // the fused kernel's layout of a shared prefix reads each row's prompt index: uploaded once for all layers
      const rowPrompt = past?.prefix?.layers[0]?.stacked ? tf.tensor1d(past.prefix.rowPrompt, "int32") : undefined;
      for (let i = 0; i < L; i++) {
        if (args.outputHiddenStates) hidden.push(h);
        const pastKV = past && past.layers.length > 0 ? past.layers[i] : null;
        const shared = past?.prefix ? { kv: past.prefix.layers[i], rows, length: past.prefix.length, rowPrompt } : undefined;
        // Activation checkpointing applies to the training forward (a full or per-row cache, never the shared-prefix
        // decode cache, which only generation builds); it falls back to the plain layer when no tape records.
        const r =
          this.gradientCheckpointing && !shared
            ? checkpointedDecoderLayer(this.model, i, h, cos, sinSigned, mask, pastKV, wantCache)
            : this.model.layer(i, h, cos, sinSigned, mask, pastKV, shared);
        h = r.h;
        if (wantCache) newKV.push(r.kv);
        else {
          r.kv.k.dispose();
          r.kv.v.dispose();
        }
      }
      h = this.model.norm(h);
      if (args.outputHiddenStates) hidden.push(h);
      let logits: tf.Tensor3D;
      if (args.skipLogits) logits = tf.zeros([B, 0, cfg.vocabSize]);
      else {
        const k = args.logitsToKeep;
        const hk = k !== undefined && k > 0 && k < S ? (tf.slice(h, [0, S - k, 0], [B, k, cfg.hiddenSize]) as tf.Tensor3D) : h;
        logits = this.model.lmHead(hk);
      }
      return { logits, hidden };
    });
    // KV tensors were tf.keep'd inside the layers: they survive the tidy.
    const out: ForwardOutput = { logits: result.logits, ropeDeltas, positionIds };
    if (args.outputHiddenStates) out.hiddenStates = result.hidden;
    if (visionIntermediates) out.visionIntermediates = visionIntermediates;
    if (past) {
      for (const l of past.layers) {
        l.k.dispose();
        l.v.dispose();
      }
      past.layers = newKV;
      past.length = pastLen + S;
      past.attentionMask = fullMask.map((r) => [...r]);
      out.pastKeyValues = past;
    } else if (wantCache) {
      out.pastKeyValues = new KVCache(newKV, S, ropeDeltas, fullMask.map((r) => [...r]));
    }
    return out;
  }

  /** Disposes every weight. */
  dispose(): void {
    this.visual.dispose();
    this.model.dispose();
  }
}
