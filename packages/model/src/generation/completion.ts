/**
 * Teacher-forced per-token log-probs of completions given prompts, for GRPO's policy / old-policy / reference terms.
 *
 * Layout of the batch: prompts left-padded to the longest prompt Lp, completions right-padded to the longest
 * completion Lc, attention mask 0 on every pad. One forward pass runs with `skipLogits` (no lm_head over the whole
 * sequence); the final hidden states at positions Lp-1 .. Lp+Lc-2 (those that predict the completion tokens) go
 * through {@link tokenLogprobs}, which never holds the [B·Lc, V] logits at once and has its own gradient.
 */
import * as tf from "@tensorflow/tfjs-core";
import { KVCache, type Qwen2VLForConditionalGeneration } from "../qwen2_vl/model";
import { InvalidGenerationParamError, SequenceTooLongError } from "./errors";
import { buildBatch } from "./generate";
import { lmHeadOnHost, logprobHead } from "./lm_head";
import { tokenLogprobs } from "./token_logprobs";
import type { TokenizedPrompt } from "./types";

/** A batch of (prompt, completion) pairs. */
export interface CompletionBatch {
  /** B prompts (ids after image-pad expansion, with their pixels). */
  prompts: TokenizedPrompt[];
  /** B completions (token ids; each at least one token). */
  completions: number[][];
  /** Id used for padding (masked out, any valid id works). Default 151643 (`<|endoftext|>`). */
  padTokenId?: number;
  /** Use the cached transposed lm_head copy (see ./lm_head.ts). Default true. */
  transposedLmHead?: boolean;
  /**
   * Run each distinct prompt once: prefill the distinct prompts, gather their KV cache to the rows, then feed the
   * completions through the cache (the gradient flows through the cache into the prompt's LoRA activations too).
   * GRPO scores G completions of one prompt, so this computes the prompt once instead of G times. false: one
   * forward over the concatenated (prompt, completion) rows. Same values within float32 rounding. Default true.
   */
  sharePrompts?: boolean;
  /**
   * Divide the logits by this before the log-softmax, as TRL's GRPO trainer does when it recomputes per-token
   * log-probs of completions sampled at that temperature. Default 1 (the raw distribution, which is what generate()
   * reports). Must be > 0.
   */
  temperature?: number;
}

/** Result of {@link completionLogprobs}; both tensors belong to the caller. */
export interface CompletionLogprobs {
  /** [B, Lc] log p(completion[b][t] | prompt, completion[b][<t]); 0 where mask is 0. Differentiable. */
  logprobs: tf.Tensor2D;
  /** [B, Lc] float32: 1 for real completion tokens, 0 for right padding. */
  mask: tf.Tensor2D;
}

function validate(model: Qwen2VLForConditionalGeneration, batch: CompletionBatch): void {
  const { prompts, completions } = batch;
  if (prompts.length === 0 || prompts.length !== completions.length) {
    throw new InvalidGenerationParamError(`completionLogprobs needs as many completions as prompts (>= 1), got ${prompts.length} prompts and ${completions.length} completions`, {
      code: "GENERATION_BAD_BATCH",
      details: { field: "completions", prompts: prompts.length, completions: completions.length },
    });
  }
  const T = batch.temperature ?? 1;
  if (!(Number.isFinite(T) && T > 0)) {
    throw new InvalidGenerationParamError(`completionLogprobs: temperature = ${T} is out of range: expected a finite number > 0`, {
      code: "GENERATION_BAD_PARAM",
      details: { field: "temperature", value: T },
    });
  }
  const V = model.config.vocabSize;
  const maxPos = model.config.maxPositionEmbeddings;
  prompts.forEach((p, b) => {
    const c = completions[b];
    if (p.inputIds.length === 0) throw new InvalidGenerationParamError(`prompts[${b}] has no tokens`, { code: "GENERATION_BAD_BATCH", details: { field: `prompts[${b}]`, row: b } });
    if (!Array.isArray(c) || c.length === 0) throw new InvalidGenerationParamError(`completions[${b}] is empty`, { code: "GENERATION_BAD_BATCH", details: { field: `completions[${b}]`, row: b } });
    c.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) {
        throw new InvalidGenerationParamError(`completions[${b}][${i}] = ${t} is outside the vocabulary [0, ${V})`, { code: "GENERATION_BAD_BATCH", details: { field: `completions[${b}]`, row: b, col: i } });
      }
    });
    if (p.inputIds.length + c.length > maxPos) {
      throw new SequenceTooLongError(`row ${b}: prompt ${p.inputIds.length} + completion ${c.length} tokens exceed max_position_embeddings ${maxPos}`, {
        code: "SEQUENCE_TOO_LONG",
        details: { row: b, promptLength: p.inputIds.length, completionLength: c.length, limit: maxPos },
      });
    }
  });
}

/**
 * Per-token log-probs of each completion under the model (LoRA adapters included when attached and enabled), as
 * tensors usable inside `tf.variableGrads` / `tf.grad`: the gradient flows through the transformer to any trainable
 * variable (LoRA A/B). Positions past a completion's end are 0 and flagged 0 in `mask`.
 */
export function completionLogprobs(model: Qwen2VLForConditionalGeneration, batch: CompletionBatch): CompletionLogprobs {
  validate(model, batch);
  const padId = batch.padTokenId ?? 151643;
  const B = batch.prompts.length;
  const Lc = Math.max(...batch.completions.map((c) => c.length));
  const H = model.config.hiddenSize;
  const tgt = new Int32Array(B * Lc).fill(padId);
  const m = new Float32Array(B * Lc);
  batch.completions.forEach((c, b) => {
    c.forEach((t, i) => {
      tgt[b * Lc + i] = t;
      m[b * Lc + i] = 1;
    });
  });
  return tf.tidy(() => {
    const hidden = batch.sharePrompts === false ? hiddenFullRows(model, batch, padId) : hiddenSharedPrompts(model, batch, padId); // [B, Lc, H]
    let h = tf.reshape(hidden, [B * Lc, H]) as tf.Tensor2D;
    // logits / T = (h / T) · Wᵀ: scaling the hidden states keeps the chunked log-softmax and its gradient unchanged.
    const T = batch.temperature ?? 1;
    if (T !== 1) h = tf.div(h, T);
    const mask = tf.tensor2d(m, [B, Lc]);
    let lp: tf.Tensor;
    if (lmHeadOnHost(model)) {
      // Host-resident lm_head (weightResidency "host"): the model's chunked lm_head gives the full [B·Lc, V] logits,
      // then log-softmax and a gather at the targets (holds B·Lc·V floats under a tape).
      const logits = tf.reshape(model.model.lmHead(tf.reshape(h, [1, B * Lc, H]) as tf.Tensor3D), [B * Lc, -1]);
      const V = logits.shape[1] as number;
      const flat = Int32Array.from(tgt, (t, i) => i * V + t);
      lp = tf.gather(tf.reshape(tf.logSoftmax(logits), [-1]), tf.tensor1d(flat, "int32"));
    } else {
      const head = logprobHead(model, batch.transposedLmHead !== false);
      lp = tokenLogprobs(h, head.weight, tf.tensor1d(tgt, "int32"), undefined, head.weightT);
    }
    return { logprobs: tf.mul(tf.reshape(lp, [B, Lc]), mask) as tf.Tensor2D, mask };
  });
}

/** Merged image features of the prompts that have images, in order; the vision tower runs once per distinct pixel array. */
function imageEmbedsOf(model: Qwen2VLForConditionalGeneration, prompts: TokenizedPrompt[]): tf.Tensor2D | undefined {
  const feats = new Map<Float32Array, tf.Tensor2D>();
  const rows: tf.Tensor2D[] = [];
  for (const p of prompts) {
    if (!p.pixelValues || p.pixelValues.length === 0) continue;
    let f = feats.get(p.pixelValues);
    if (!f) {
      const grid = p.imageGridThw ?? [];
      const n = grid.reduce((a, g) => a + g[0] * g[1] * g[2], 0);
      f = model.getImageFeatures(tf.tensor2d(p.pixelValues, [n, p.pixelValues.length / n]), grid);
      feats.set(p.pixelValues, f);
    }
    rows.push(f);
  }
  if (rows.length === 0) return undefined;
  return rows.length === 1 ? rows[0] : (tf.concat(rows, 0) as tf.Tensor2D);
}

function finalHidden(out: { hiddenStates?: tf.Tensor3D[] }): tf.Tensor3D {
  const hs = out.hiddenStates!;
  return hs[hs.length - 1]; // after the final norm: the lm_head input
}

/** [B, Lc, H] lm_head inputs that predict each completion token: one forward over the (prompt, completion) rows. */
function hiddenFullRows(model: Qwen2VLForConditionalGeneration, batch: CompletionBatch, padId: number): tf.Tensor3D {
  const B = batch.prompts.length;
  const enc = buildBatch(batch.prompts, padId, batch.completions, false);
  const Lc = enc.completionLength;
  const Lp = enc.length - Lc;
  const out = model.forward({
    inputIds: enc.inputIds,
    attentionMask: enc.attentionMask,
    imageEmbeds: imageEmbedsOf(model, batch.prompts),
    imageGridThw: enc.imageGridThw,
    outputHiddenStates: true,
    skipLogits: true,
  });
  return tf.slice(finalHidden(out), [0, Lp - 1, 0], [B, Lc, model.config.hiddenSize]) as tf.Tensor3D;
}

/**
 * [B, Lc, H] lm_head inputs with each distinct prompt computed once: prefill of the distinct prompts (left-padded),
 * their KV cache gathered to the B rows, then the completions (right-padded, minus their last token) through the cache.
 * The last prompt position predicts completion token 0; completion token i predicts token i + 1.
 */
function hiddenSharedPrompts(model: Qwen2VLForConditionalGeneration, batch: CompletionBatch, padId: number): tf.Tensor3D {
  const B = batch.prompts.length;
  const H = model.config.hiddenSize;
  const Lc = Math.max(...batch.completions.map((c) => c.length));
  // distinct prompts: same ids and the same pixel array (GRPO passes one prompt object G times)
  const pixelId = new Map<Float32Array, number>();
  const keyOf = (p: TokenizedPrompt) => {
    let px = -1;
    if (p.pixelValues && p.pixelValues.length > 0) {
      if (!pixelId.has(p.pixelValues)) pixelId.set(p.pixelValues, pixelId.size);
      px = pixelId.get(p.pixelValues)!;
    }
    return `${px}|${p.inputIds.join(",")}`;
  };
  const uniq: TokenizedPrompt[] = [];
  const index = new Map<string, number>();
  const rowU = batch.prompts.map((p) => {
    const k = keyOf(p);
    let u = index.get(k);
    if (u === undefined) {
      u = uniq.length;
      index.set(k, u);
      uniq.push(p);
    }
    return u;
  });
  const pre = buildBatch(uniq, padId, undefined, false);
  const Lp = pre.length;
  const o1 = model.forward({
    inputIds: pre.inputIds,
    attentionMask: pre.attentionMask,
    imageEmbeds: imageEmbedsOf(model, uniq),
    imageGridThw: pre.imageGridThw,
    useCache: true,
    outputHiddenStates: true,
    skipLogits: true,
  });
  const cache = o1.pastKeyValues!;
  const ix = tf.tensor1d(rowU, "int32");
  const first = tf.gather(tf.reshape(tf.slice(finalHidden(o1), [0, Lp - 1, 0], [uniq.length, 1, H]), [uniq.length, H]), ix); // [B, H]
  if (Lc === 1) {
    cache.dispose();
    return tf.reshape(first, [B, 1, H]) as tf.Tensor3D;
  }
  const rows = new KVCache(
    cache.layers.map((l) => ({ k: tf.gather(l.k, ix) as tf.Tensor4D, v: tf.gather(l.v, ix) as tf.Tensor4D })),
    cache.length,
    rowU.map((u) => cache.ropeDeltas[u]),
    rowU.map((u) => [...cache.attentionMask[u]]),
  );
  cache.dispose(); // (a gradient tape keeps its own references to what the backward pass needs)
  try {
    const S = Lc - 1;
    const ids = new Int32Array(B * S).fill(padId);
    const mask: number[][] = [];
    batch.completions.forEach((c, b) => {
      const row = [...rows.attentionMask[b]];
      for (let i = 0; i < S; i++) {
        const real = i < c.length;
        if (real) ids[b * S + i] = c[i];
        row.push(real ? 1 : 0);
      }
      mask.push(row);
    });
    const o2 = model.forward({
      inputIds: tf.tensor2d(ids, [B, S], "int32"),
      attentionMask: tf.tensor2d(mask, [B, Lp + S], "int32"),
      pastKeyValues: rows,
      outputHiddenStates: true,
      skipLogits: true,
    });
    return tf.concat([tf.reshape(first, [B, 1, H]), finalHidden(o2)], 1) as tf.Tensor3D;
  } finally {
    rows.dispose();
  }
}

/** Per row, the first len(completion) values of a row-major [B, Lc] read-back (the padding dropped). */
function completionRows(data: Float32Array, lc: number, completions: number[][]): number[][] {
  return completions.map((c, b) => Array.from(data.subarray(b * lc, b * lc + c.length)));
}

/**
 * Async host version of {@link completionLogprobs}: per row, the log-probs of that completion's tokens (no padding).
 * Works on every backend (webgpu has no synchronous read-back in Node).
 */
export async function readCompletionLogprobs(model: Qwen2VLForConditionalGeneration, batch: CompletionBatch): Promise<number[][]> {
  const r = completionLogprobs(model, batch);
  try {
    return completionRows((await r.logprobs.data()) as Float32Array, r.logprobs.shape[1], batch.completions);
  } finally {
    r.logprobs.dispose();
    r.mask.dispose();
  }
}

/** Host version of {@link completionLogprobs} (synchronous read: cpu, wasm, tensorflow; on webgpu use {@link readCompletionLogprobs}). */
export function completionLogprobsHost(model: Qwen2VLForConditionalGeneration, batch: CompletionBatch): number[][] {
  const r = completionLogprobs(model, batch);
  try {
    return completionRows(r.logprobs.dataSync() as Float32Array, r.logprobs.shape[1], batch.completions);
  } finally {
    r.logprobs.dispose();
    r.mask.dispose();
  }
}
