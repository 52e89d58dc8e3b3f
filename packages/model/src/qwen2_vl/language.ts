import { fusedAttention, fusedSwiglu } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { frozenGather, frozenMatMul, type HostWeight, isTrainableWeight, type Linear } from "../nn/linear";
import { rmsNorm } from "../nn/ops";
import type { VocabChunks } from "../nn/vocab_chunks";
import type { Qwen2VLConfig } from "./config";
import { applyRotary } from "./rope";

/** float32 finfo.min, the additive mask value transformers uses. */
export const MASK_MIN = -3.4028234663852886e38;

/** Weights of one decoder layer (Qwen2VLDecoderLayer). */
export interface DecoderLayerWeights {
  /** input_layernorm.weight [H]. */
  inputLayernorm: tf.Tensor1D;
  /** post_attention_layernorm.weight [H]. */
  postAttentionLayernorm: tf.Tensor1D;
  /** self_attn.q_proj [heads·D, H] + bias. */
  qProj: Linear;
  /** self_attn.k_proj [kvHeads·D, H] + bias. */
  kProj: Linear;
  /** self_attn.v_proj [kvHeads·D, H] + bias. */
  vProj: Linear;
  /** self_attn.o_proj [H, heads·D], no bias. */
  oProj: Linear;
  /** mlp.gate_proj [I, H]. */
  gateProj: Linear;
  /** mlp.up_proj [I, H]. */
  upProj: Linear;
  /** mlp.down_proj [H, I]. */
  downProj: Linear;
}

/** A decoder layer's Linears with their hub names relative to the layer (`self_attn.q_proj`, ..., `mlp.down_proj`). */
export function layerLinears(l: DecoderLayerWeights): Array<[string, Linear]> {
  return [
    ["self_attn.q_proj", l.qProj],
    ["self_attn.k_proj", l.kProj],
    ["self_attn.v_proj", l.vProj],
    ["self_attn.o_proj", l.oProj],
    ["mlp.gate_proj", l.gateProj],
    ["mlp.up_proj", l.upProj],
    ["mlp.down_proj", l.downProj],
  ];
}

/** Weights of the language model. */
export interface TextWeights {
  /** model.embed_tokens.weight [V, H]. */
  embedTokens: tf.Tensor2D;
  layers: DecoderLayerWeights[];
  /** model.norm.weight [H]. */
  norm: tf.Tensor1D;
  /** lm_head.weight [V, H]; null when tied to embedTokens. */
  lmHead: tf.Tensor2D | null;
  /**
   * weightResidency "host" only: embed_tokens kept in host memory (embedTokens is then an empty [0, H] placeholder;
   * rows are gathered on the host and the lm_head is applied in uploaded chunks).
   */
  embedTokensHost?: HostWeight | null;
  /** weightResidency "host" only: an untied lm_head kept in host memory. */
  lmHeadHost?: HostWeight | null;
  /**
   * embed_tokens as row chunks (see VocabChunks; the loader makes them when the matrix exceeds one GPU storage
   * binding); embedTokens is then an empty [0, H] placeholder. Tied lm_head: these chunks serve it too.
   */
  embedChunks?: VocabChunks | null;
  /** An untied lm_head as row chunks (lmHead is then null). */
  lmHeadChunks?: VocabChunks | null;
}

/** Rows per uploaded chunk when a host-resident lm_head is applied (16384 x 1536 floats = 100 MB). */
const LM_HEAD_CHUNK = 16384;

/**
 * Additive attention mask [B, 1, S, T] (0 = attend, finfo.min = masked) for S new queries at absolute key
 * positions past..past+S-1 over T = past + S keys: causal, and keys with attentionMask2d = 0 masked
 * (transformers' `_update_causal_mask`, eager path). Pure data; wrap with tf.tensor4d.
 * @param mask2d [B][T] 0/1 over all keys (past + new).
 */
export function buildAttentionMask(mask2d: number[][], past: number, S: number): Float32Array {
  const B = mask2d.length;
  const T = past + S;
  const out = new Float32Array(B * S * T);
  for (let b = 0; b < B; b++) {
    const row = mask2d[b];
    if (row.length !== T) throw new RangeError(`attention mask row ${b} has ${row.length} entries, expected ${T} (cache ${past} + new ${S})`);
    for (let i = 0; i < S; i++) {
      const o = (b * S + i) * T;
      const qpos = past + i;
      for (let j = 0; j < T; j++) out[o + j] = j > qpos || row[j] === 0 ? MASK_MIN : 0;
    }
  }
  return out;
}

/** One layer's cached keys/values, each [B, kvHeads, T, headDim] (after RoPE for keys). */
export interface LayerKV {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/**
 * One layer's keys/values of shared prompts (see KVCache.prefix): for prompt p and kv head h, `kT[p][h]` is
 * [headDim, Tp] (keys after RoPE, transposed) and `v[p][h]` is [Tp, headDim]. Stored once per prompt, whatever
 * the number of rows (samples) that attend to it. On webgpu (where @rarl/core's fused attention runs) they are
 * held instead as `stacked` ([P, kvHeads, Tp, headDim] keys and values, what the fused kernel reads), and kT / v
 * are empty.
 */
export interface SharedLayerKV {
  kT: tf.Tensor2D[][];
  v: tf.Tensor2D[][];
  stacked?: { k: tf.Tensor4D; v: tf.Tensor4D } | null;
}

/** Batch rows [start, start + count) attend to the shared keys of prompt `prompt`. */
export interface PromptRows {
  prompt: number;
  start: number;
  count: number;
}

/** What {@link Qwen2VLTextModel.layer} needs to attend to a shared prompt prefix. */
export interface SharedPrefixArgs {
  kv: SharedLayerKV;
  /** Consecutive row ranges and their prompt (every batch row in exactly one range). */
  rows: PromptRows[];
  /** Tp: number of shared positions (the first Tp of the T keys the mask covers). */
  length: number;
  /** int32 [B]: each row's prompt (what `rows` says), for the stacked layout; made from `rows` when absent. */
  rowPrompt?: tf.Tensor1D;
}

/**
 * Products of each row range's rows of `a` (a: [kvh, B, m, K], kv head outermost) with the range's per-kv-head 2-D
 * matrices `mats[prompt][h]` [K, N]: returns [kvh, B, m, N]. 2-D products run at full speed on wasm (XNNPACK, and
 * the constant right-hand side is packed once), where a batched matMul over B·kvh small products does not.
 */
function perPromptProducts(a: tf.Tensor4D, mats: tf.Tensor2D[][], rows: PromptRows[]): tf.Tensor4D {
  const [kvh, B, m, K] = a.shape;
  const N = mats[rows[0].prompt][0].shape[1];
  const heads = tf.unstack(a).map((ah, h) => {
    const parts = rows.map(({ prompt, start, count }) => {
      const ar = count === B ? ah : tf.slice(ah, [start, 0, 0], [count, m, K]);
      return tf.matMul(tf.reshape(ar, [count * m, K]) as tf.Tensor2D, mats[prompt][h]);
    });
    return parts.length === 1 ? parts[0] : tf.concat(parts, 0);
  });
  return tf.reshape(tf.stack(heads), [kvh, B, m, N]) as tf.Tensor4D;
}

/**
 * Grouped-query attention over [shared prompt keys | per-row keys] (cascade / shared-prefix attention): the
 * scores against the prompt are per-prompt 2-D products, the per-row part is a batched product over the few
 * positions after the prompt. Same result as attention over the concatenated keys (the softmax runs over both
 * parts together); only the order of float additions in p·V differs (prompt part + row part). Scores are laid out
 * kv head first, [kvh, B, G·S, T], so the per-head products need no transpose of anything T long.
 * @param qg [B, kvh, G·S, D] queries (G query heads per kv head folded into rows).
 * @param k [B, kvh, Ts, D], v [B, kvh, Ts, D]: per-row keys/values after the prompt (new ones included).
 * @param mask [B, 1, S, Tp + Ts] additive.
 * @returns [B, kvh, G·S, D].
 */
function sharedPrefixAttention(qg: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D, shared: SharedPrefixArgs, G: number): tf.Tensor4D {
  const [B, kvh, GS, D] = qg.shape;
  const S = GS / G;
  const Tp = shared.length;
  const Ts = k.shape[2];
  const T = Tp + Ts;
  const toHeadFirst = [1, 0, 2, 3];
  const sp = perPromptProducts(tf.transpose(qg, toHeadFirst) as tf.Tensor4D, shared.kv.kT, shared.rows); // [kvh, B, GS, Tp]
  const ss = tf.transpose(tf.matMul(qg, tf.transpose(k, [0, 1, 3, 2])), toHeadFirst); // [kvh, B, GS, Ts]
  let scores = tf.mul(tf.concat([sp, ss], 3), 1 / Math.sqrt(D));
  scores = tf.add(tf.reshape(scores, [kvh, B, G, S, T]), tf.reshape(mask, [1, B, 1, S, T]));
  const p = tf.reshape(tf.softmax(scores), [kvh, B, GS, T]);
  const pp = tf.slice(p, [0, 0, 0, 0], [kvh, B, GS, Tp]) as tf.Tensor4D;
  const ps = tf.slice(p, [0, 0, 0, Tp], [kvh, B, GS, Ts]);
  const ap = perPromptProducts(pp, shared.kv.v, shared.rows); // [kvh, B, GS, D]
  return tf.add(tf.transpose(ap, toHeadFirst), tf.matMul(tf.transpose(ps, toHeadFirst), v)) as tf.Tensor4D;
}

/**
 * The Qwen2 decoder of Qwen2-VL (transformers 4.47 `Qwen2VLModel`, eager attention): RMSNorm, grouped-query
 * attention with q/k/v bias and M-RoPE, SwiGLU MLP, final RMSNorm.
 */
export class Qwen2VLTextModel {
  constructor(
    readonly config: Qwen2VLConfig,
    readonly weights: TextWeights,
  ) {}

  /** Every Linear with PEFT/HF module paths (`model.layers.<i>.self_attn.q_proj`, ...). */
  namedLinears(prefix = "model."): Map<string, Linear> {
    const m = new Map<string, Linear>();
    this.weights.layers.forEach((l, i) => {
      for (const [name, lin] of layerLinears(l)) m.set(`${prefix}layers.${i}.${name}`, lin);
    });
    return m;
  }

  /** Token embeddings [B, S, H] for ids [B, S]. */
  embed(inputIds: tf.Tensor2D): tf.Tensor3D {
    const chunks = this.weights.embedChunks;
    if (chunks) {
      return tf.tidy(() => {
        const [B, S] = inputIds.shape;
        return tf.reshape(chunks.gather(tf.reshape(inputIds, [B * S]) as tf.Tensor1D), [B, S, this.config.hiddenSize]) as tf.Tensor3D;
      });
    }
    const host = this.weights.embedTokensHost;
    if (host) {
      const [B, S] = inputIds.shape;
      const H = host.shape[1];
      const ids = inputIds.dataSync();
      const out = new Float32Array(B * S * H);
      for (let i = 0; i < ids.length; i++) out.set(host.data.subarray(ids[i] * H, (ids[i] + 1) * H), i * H);
      return tf.tensor3d(out, [B, S, H]);
    }
    return tf.tidy(() => {
      const [B, S] = inputIds.shape;
      return tf.reshape(frozenGather(this.weights.embedTokens, tf.reshape(inputIds, [B * S]) as tf.Tensor1D), [B, S, this.config.hiddenSize]);
    });
  }

  /**
   * One decoder layer. h [B, S, H]; cos/sinSigned [B, 1, S, D]; mask [B, 1, S, T] additive; past: cached K/V of
   * this layer (T - S positions) or null. Returns the new residual stream and this layer's full K/V (past + new).
   * With `shared`, the first `shared.length` of the T keys are the shared prompt keys of each row's prompt, and
   * `past` / the returned K/V hold only the positions after them.
   */
  layer(
    i: number,
    h: tf.Tensor3D,
    cos: tf.Tensor4D,
    sinSigned: tf.Tensor4D,
    mask: tf.Tensor4D,
    past: LayerKV | null,
    shared?: SharedPrefixArgs,
  ): { h: tf.Tensor3D; kv: LayerKV } {
    const cfg = this.config;
    const w = this.weights.layers[i];
    const [B, S, H] = h.shape;
    const nh = cfg.numAttentionHeads;
    const kvh = cfg.numKeyValueHeads;
    const D = cfg.headDim;
    const G = nh / kvh;
    let kv!: LayerKV;
    const out = tf.tidy(() => {
      const x = rmsNorm(h, w.inputLayernorm, cfg.rmsNormEps);
      // projections in transposed layout: one shared xT [H, B·S]; yT [heads·D, B·S] -> [B, heads, S, D]
      const xT = tf.transpose(tf.reshape(x, [B * S, H])) as tf.Tensor2D;
      const heads = (yT: tf.Tensor2D, n: number) => tf.transpose(tf.reshape(yT, [n, D, B, S]), [2, 0, 3, 1]);
      const q0 = heads(w.qProj.applyT(xT), nh);
      const k0 = heads(w.kProj.applyT(xT), kvh);
      const v0 = heads(w.vProj.applyT(xT), kvh) as tf.Tensor4D;
      const q = applyRotary(q0, cos, sinSigned);
      const kNew = applyRotary(k0, cos, sinSigned) as tf.Tensor4D;
      const k = past ? (tf.concat([past.k, kNew], 2) as tf.Tensor4D) : kNew;
      const v = past ? (tf.concat([past.v, v0], 2) as tf.Tensor4D) : v0;
      kv = { k: tf.keep(k), v: tf.keep(v) };
      // grouped-query attention (query head j uses kv head floor(j / G)), heads merged: [B, S, heads·D].
      // @rarl/core's fusedAttention: one kernel on webgpu, the tfjs composite (as before) elsewhere.
      let att: tf.Tensor;
      const stacked = shared?.kv.stacked;
      if (shared && stacked) {
        const rowPrompt = shared.rowPrompt ?? tf.tensor1d(shared.rows.flatMap((r) => Array<number>(r.count).fill(r.prompt)), "int32");
        att = fusedAttention(q as tf.Tensor4D, k, v, mask, { k: stacked.k, v: stacked.v, rowPrompt });
      } else if (shared) {
        // fold the G query heads of each kv head into the row axis: [B, kvh, G·S, D]
        const qg = tf.reshape(q, [B, kvh, G * S, D]) as tf.Tensor4D;
        const a = tf.reshape(sharedPrefixAttention(qg, k, v, mask, shared, G), [B, nh, S, D]);
        att = tf.reshape(tf.transpose(a, [0, 2, 1, 3]), [B, S, nh * D]);
      } else att = fusedAttention(q as tf.Tensor4D, k, v, mask);
      const attOut = w.oProj.apply(att);
      const h1 = tf.add(h, attOut);
      const x2T = tf.transpose(tf.reshape(rmsNorm(h1, w.postAttentionLayernorm, cfg.rmsNormEps), [B * S, H])) as tf.Tensor2D;
      const mlpT = w.downProj.applyT(fusedSwiglu(w.gateProj.applyT(x2T), w.upProj.applyT(x2T)) as tf.Tensor2D); // [H, B·S]
      return tf.add(h1, tf.reshape(tf.transpose(mlpT), [B, S, H])) as tf.Tensor3D;
    });
    return { h: out, kv };
  }

  /** Final RMSNorm. */
  norm(h: tf.Tensor): tf.Tensor3D {
    return rmsNorm(h, this.weights.norm, this.config.rmsNormEps) as tf.Tensor3D;
  }

  /**
   * lm_head: h [B, S, H] -> logits [B, S, V]. Computed as (W · hᵀ)ᵀ with W [V, H] (tied: embed_tokens), which
   * avoids both a transposed-flag matmul (slow on wasm) and a transposed copy of the 151936-row matrix.
   */
  lmHead(h: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const [B, S, H] = h.shape;
      const chunks = this.vocabChunks();
      if (chunks) return tf.reshape(chunks.logits(tf.reshape(h, [B * S, H])), [B, S, chunks.rows]) as tf.Tensor3D;
      const hostW = this.weights.lmHeadHost ?? (this.weights.lmHead ? null : this.weights.embedTokensHost);
      if (hostW) {
        const hT = tf.transpose(tf.reshape(h, [B * S, H]));
        const V = hostW.shape[0];
        const parts: tf.Tensor[] = [];
        for (let r = 0; r < V; r += LM_HEAD_CHUNK) {
          const n = Math.min(LM_HEAD_CHUNK, V - r);
          parts.push(
            tf.tidy(() => {
              const chunk = tf.tensor2d(hostW.data.subarray(r * H, (r + n) * H), [n, H]);
              return tf.transpose(tf.matMul(chunk, hT)); // [B*S, n]
            }),
          );
        }
        return tf.reshape(tf.concat(parts, 1), [B, S, V]) as tf.Tensor3D;
      }
      const W = this.weights.lmHead ?? this.weights.embedTokens;
      const hT = tf.transpose(tf.reshape(h, [B * S, H]));
      const yT = isTrainableWeight(W) ? tf.matMul(W, hT) : frozenMatMul(() => W, hT as tf.Tensor2D);
      return tf.reshape(tf.transpose(yT), [B, S, W.shape[0]]) as tf.Tensor3D;
    });
  }

  /** The lm_head as row chunks (tied: the embedding's), or null when it is one tensor / host-resident. */
  vocabChunks(): VocabChunks | null {
    const w = this.weights;
    return w.lmHeadChunks ?? (w.lmHead || w.lmHeadHost ? null : (w.embedChunks ?? null));
  }

  dispose(): void {
    const w = this.weights;
    w.embedTokens.dispose();
    w.embedChunks?.dispose();
    w.lmHeadChunks?.dispose();
    w.norm.dispose();
    w.lmHead?.dispose();
    for (const l of w.layers) {
      l.inputLayernorm.dispose();
      l.postAttentionLayernorm.dispose();
      for (const [, lin] of layerLinears(l)) lin.dispose();
    }
  }
}
