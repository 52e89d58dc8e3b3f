import * as tf from "@tensorflow/tfjs-core";
import { GrpoInputError } from "../errors";

/**
 * How per-token losses are reduced to one number, and which surrogate is used (TRL's `loss_type`):
 * "grpo" | "bnpo" | "dr_grpo" | "dapo" are the clipped surrogate with different normalisers; "cispo" is
 * −min(ratio, ε_high).detach()·A·logp (ScaleRL/MiniMax-M1), normalised like "dapo".
 */
export type LossType = "grpo" | "bnpo" | "dr_grpo" | "dapo" | "cispo";
export const LOSS_TYPES: readonly LossType[] = ["grpo", "bnpo", "dr_grpo", "dapo", "cispo"];

/** Where the importance weight lives (TRL's `importance_sampling_level`): per token, or one per sequence (GSPO). */
export type ImportanceSamplingLevel = "token" | "sequence";
export const IMPORTANCE_SAMPLING_LEVELS: readonly ImportanceSamplingLevel[] = ["token", "sequence"];

/** Identity whose gradient is zero (torch's `.detach()`); tfjs-core has no stopGradient op. */
export const stopGradient = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

export interface GrpoLossInput {
  /** Per-token log-probs of the completions under the current policy, [B, T]; gradients flow through it. */
  logp: tf.Tensor2D;
  /**
   * Per-token log-probs under the policy that sampled the completions, [B, T]. Omit when μ = 1: then
   * old = current, detached (ratio 1, as TRL does), which needs no second forward.
   */
  oldLogp?: tf.Tensor2D | null;
  /** Per-token log-probs under the reference policy (adapter off), [B, T]. Required when beta > 0. */
  refLogp?: tf.Tensor2D | null;
  /** One advantage per sequence, length B (or, as TRL accepts for subclasses, one per token: a [B, T] tensor). */
  advantages: tf.Tensor1D | tf.Tensor2D | ArrayLike<number>;
  /** 1 for completion tokens that count, 0 for padding (and for truncated completions when masked), [B, T]. */
  mask: tf.Tensor2D;
  /**
   * Per-token entropy of the (temperature-scaled) next-token distribution, [B, T], no gradient. Needed for
   * `topEntropyQuantile` < 1 and for the `entropy` metric; computed in the same chunked lm_head pass as `logp`.
   */
  entropy?: tf.Tensor2D | null;
  /**
   * The vLLM importance-sampling correction (TRL's `importance_sampling_ratio`), [B, T] (token modes) or [B, 1]
   * (sequence modes), see {@link vllmImportanceSamplingRatio}. Multiplies the policy term before the KL is added.
   */
  importanceSamplingRatio?: tf.Tensor2D | null;
}

export interface GrpoLossOptions {
  /** KL coefficient β (TRL `beta`). 0 drops the KL term and needs no reference log-probs. */
  beta: number;
  /** Lower clip ε (TRL `epsilon`): the ratio is clipped at 1 − ε_low. */
  epsilonLow: number;
  /**
   * Upper clip (TRL `epsilon_high`): the ratio is clipped at 1 + ε_high (clip-higher, DAPO: 0.28); defaults to
   * ε_low. For "cispo" it is the absolute cap ε_max of the ratio (ScaleRL: 5.0) and is required.
   */
  epsilonHigh?: number;
  /** Surrogate and normaliser (TRL `loss_type`). */
  lossType: LossType;
  /** "token" (default) or "sequence" (GSPO: exp of the masked mean log-ratio of each sequence). */
  importanceSamplingLevel?: ImportanceSamplingLevel;
  /** Two-sided clip (TRL `delta`, INTELLECT-2): the unclipped ratio term is capped at δ (> 1 + ε_high). Default none. */
  delta?: number | null;
  /** Denominator length for "dr_grpo" (TRL: max_completion_length). Required for that type. */
  maxCompletionLength?: number;
  /**
   * Keep the policy term only on counted tokens whose entropy is ≥ the (1 − ρ) quantile of the counted tokens'
   * entropies (TRL `top_entropy_quantile` ρ, "Beyond the 80/20 rule": 0.2). Default 1 (all tokens). Needs `entropy`.
   */
  topEntropyQuantile?: number;
  /**
   * For evaluating a batch in row chunks (gradient accumulation over rows, exact): the whole micro-batch's number of
   * sequences and of counted tokens. The chunk losses then sum to the whole micro-batch's loss. Default: this chunk's own.
   */
  totals?: { sequences: number; tokens: number };
  /**
   * "dapo" / "cispo" normaliser (TRL `num_items_in_batch`): counted tokens in the whole generation batch, across
   * gradient-accumulation micro-batches; the micro-batch losses are then summed, not averaged. Default: this
   * chunk's own token count (or `totals.tokens`).
   */
  numItemsInBatch?: number;
  /** Entropy threshold to use instead of computing the quantile from `entropy` (row chunks share their micro-batch's). */
  entropyThreshold?: number;
}

function checkShapes(inp: GrpoLossInput): void {
  const [B, T] = inp.logp.shape;
  const same = (t: tf.Tensor | null | undefined, name: string, allowCol = false) => {
    if (t && (t.shape.length !== 2 || t.shape[0] !== B || (t.shape[1] !== T && !(allowCol && t.shape[1] === 1)))) {
      throw new GrpoInputError(`${name} has shape [${t.shape}], expected [${B}, ${T}]${allowCol ? ` or [${B}, 1]` : ""} like logp`, {
        code: "GRPO_SHAPE",
        details: { tensor: name, shape: t.shape },
      });
    }
  };
  same(inp.oldLogp, "oldLogp");
  same(inp.refLogp, "refLogp");
  same(inp.mask, "mask");
  same(inp.entropy, "entropy");
  same(inp.importanceSamplingRatio, "importanceSamplingRatio", true);
  if (inp.advantages instanceof tf.Tensor && inp.advantages.rank === 2) {
    same(inp.advantages as tf.Tensor2D, "advantages");
    return;
  }
  const nAdv = inp.advantages instanceof tf.Tensor ? inp.advantages.shape[0] : inp.advantages.length;
  if (nAdv !== B) {
    throw new GrpoInputError(`advantages has ${nAdv} values, expected ${B} (one per sequence)`, { code: "GRPO_SHAPE", details: { tensor: "advantages" } });
  }
}

const bad = (msg: string, field: string) => new GrpoInputError(msg, { code: "GRPO_BAD_OPTION", details: { field } });

/** Throws GrpoInputError (naming the option) for option values or combinations TRL rejects or the issue forbids. */
export function checkLossOptions(opts: GrpoLossOptions): void {
  if (!LOSS_TYPES.includes(opts.lossType)) throw bad(`unknown lossType "${opts.lossType}" (expected one of ${LOSS_TYPES.join(", ")})`, "lossType");
  const level = opts.importanceSamplingLevel ?? "token";
  if (!IMPORTANCE_SAMPLING_LEVELS.includes(level)) throw bad(`unknown importanceSamplingLevel "${level}" (expected "token" or "sequence")`, "importanceSamplingLevel");
  if (!(opts.beta >= 0)) throw bad(`beta must be >= 0, got ${opts.beta}`, "beta");
  if (!(opts.epsilonLow >= 0)) throw bad(`epsilonLow must be >= 0, got ${opts.epsilonLow}`, "epsilonLow");
  if (opts.epsilonHigh !== undefined && !(opts.epsilonHigh >= 0)) throw bad(`epsilonHigh must be >= 0, got ${opts.epsilonHigh}`, "epsilonHigh");
  // δ has no effect on "cispo" (TRL ignores it there), so it is only checked for the clipped surrogate.
  if (opts.delta !== undefined && opts.delta !== null && opts.lossType !== "cispo") {
    const epsHigh = opts.epsilonHigh ?? opts.epsilonLow;
    if (!(opts.delta > 1 + epsHigh)) throw bad(`delta must be > 1 + epsilonHigh = ${1 + epsHigh}, got ${opts.delta}`, "delta");
  }
  const q = opts.topEntropyQuantile ?? 1;
  if (!(q > 0 && q <= 1)) throw bad(`topEntropyQuantile must be in (0, 1], got ${q}`, "topEntropyQuantile");
  if (opts.lossType === "dr_grpo" && !(opts.maxCompletionLength && opts.maxCompletionLength > 0)) {
    throw bad("lossType dr_grpo needs maxCompletionLength > 0", "maxCompletionLength");
  }
}

/** KL k3 estimator per token: exp(ref − logp) − (ref − logp) − 1 (eq. 3), ≥ 0, = 0 when logp = ref. */
export function perTokenKl(logp: tf.Tensor, refLogp: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const d = tf.sub(refLogp, logp);
    return tf.sub(tf.sub(tf.exp(d), d), 1);
  });
}

/**
 * torch.quantile (linear interpolation between the two nearest ranks) of the entropies of counted tokens, at
 * level 1 − ρ: the threshold of TRL's get_high_entropy_mask. NaN when no token counts.
 */
export function entropyThreshold(entropy: ArrayLike<number>, mask: ArrayLike<number>, topEntropyQuantile: number): number {
  const vals: number[] = [];
  for (let i = 0; i < entropy.length; i++) if (mask[i] !== 0) vals.push(entropy[i]);
  if (vals.length === 0) return Number.NaN;
  vals.sort((a, b) => a - b);
  const pos = (1 - topEntropyQuantile) * (vals.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, vals.length - 1);
  return vals[lo] + (pos - lo) * (vals[hi] - vals[lo]);
}

/**
 * Reduces masked per-token losses [B, T] the way TRL does:
 * - grpo: mean over each sequence's own tokens, then mean over sequences;
 * - bnpo: sum over all tokens / number of counted tokens (of the micro-batch);
 * - dr_grpo: sum over all tokens / (B × maxCompletionLength);
 * - dapo, cispo: sum over all tokens / counted tokens of the whole generation batch (`numItemsInBatch`).
 * Token counts are clamped to ≥ 1.
 */
export function aggregateLoss(
  perToken: tf.Tensor2D,
  mask: tf.Tensor2D,
  lossType: LossType,
  maxCompletionLength?: number,
  totals?: { sequences: number; tokens: number },
  numItemsInBatch?: number,
): tf.Scalar {
  return tf.tidy(() => {
    const masked = tf.mul(perToken, mask);
    const nSeq = totals?.sequences ?? perToken.shape[0];
    const tokens = () => (totals ? tf.scalar(Math.max(totals.tokens, 1)) : tf.maximum(tf.sum(mask), 1));
    if (lossType === "grpo") {
      const perSeq = tf.div(tf.sum(masked, 1), tf.maximum(tf.sum(mask, 1), 1));
      return tf.div(tf.sum(perSeq), nSeq) as tf.Scalar;
    }
    if (lossType === "bnpo") return tf.div(tf.sum(masked), tokens()) as tf.Scalar;
    if (lossType === "dr_grpo") {
      if (!(maxCompletionLength && maxCompletionLength > 0)) throw bad("lossType dr_grpo needs maxCompletionLength > 0", "maxCompletionLength");
      return tf.div(tf.sum(masked), nSeq * maxCompletionLength) as tf.Scalar;
    }
    if (lossType === "dapo" || lossType === "cispo") {
      return tf.div(tf.sum(masked), numItemsInBatch !== undefined ? tf.scalar(Math.max(numItemsInBatch, 1)) : tokens()) as tf.Scalar;
    }
    throw bad(`unknown lossType "${lossType}" (expected one of ${LOSS_TYPES.join(", ")})`, "lossType");
  });
}

/** Number of values in a {@link grpoLossAndStats} stats tensor. */
export const GRPO_STATS_SIZE = 10;

/**
 * The loss of {@link grpoLoss} and, from the same tensors, its diagnostics as sums and counts (so that row chunks
 * add up): [klSum, lowSum, highSum, regionSum, cispoSum, ratioSum, clipCount, entropySum, tokenCount,
 * entropyKeptSum (tokens kept by the entropy mask)]. "clipCount" is counted tokens at token level and
 * sequences at sequence level (TRL's global_masked_mean). The caller owns both tensors.
 */
export function grpoLossAndStats(inp: GrpoLossInput, opts: GrpoLossOptions): { loss: tf.Scalar; stats: tf.Tensor1D } {
  checkShapes(inp);
  checkLossOptions(opts);
  if (opts.beta > 0 && !inp.refLogp) throw bad("beta > 0 needs refLogp (reference log-probs)", "refLogp");
  const q = opts.topEntropyQuantile ?? 1;
  if (q < 1 && !inp.entropy && opts.entropyThreshold === undefined) throw bad("topEntropyQuantile < 1 needs the per-token entropy (input.entropy)", "entropy");
  const level = opts.importanceSamplingLevel ?? "token";
  const epsHigh = opts.epsilonHigh ?? opts.epsilonLow;
  let threshold: number | null = null;
  if (q < 1) threshold = opts.entropyThreshold ?? entropyThreshold(inp.entropy!.dataSync(), inp.mask.dataSync(), q);
  const out = tf.tidy(() => {
    const mask = inp.mask;
    const old = inp.oldLogp ?? stopGradient(inp.logp);
    const logRatio = tf.sub(inp.logp, old);
    const nTok = tf.sum(mask, 1, true); // [B, 1]
    const logW = level === "token" ? logRatio : tf.div(tf.sum(tf.mul(logRatio, mask), 1, true), tf.maximum(nTok, 1));
    let coef1 = tf.exp(logW); // [B, T] or [B, 1]
    const adv =
      inp.advantages instanceof tf.Tensor && inp.advantages.rank === 2
        ? inp.advantages
        : tf.reshape(inp.advantages instanceof tf.Tensor ? inp.advantages : tf.tensor1d(Array.from(inp.advantages as ArrayLike<number>), "float32"), [-1, 1]);
    let perToken: tf.Tensor;
    if (opts.lossType === "cispo") {
      const clamped = stopGradient(tf.minimum(coef1, epsHigh));
      perToken = tf.neg(tf.mul(tf.mul(clamped, adv), inp.logp));
    } else {
      const coef2 = tf.clipByValue(coef1, 1 - opts.epsilonLow, 1 + epsHigh);
      if (opts.delta !== undefined && opts.delta !== null) coef1 = tf.minimum(coef1, opts.delta);
      perToken = tf.neg(tf.minimum(tf.mul(coef1, adv), tf.mul(coef2, adv)));
    }
    let entropyMask: tf.Tensor | null = null;
    if (threshold !== null) {
      entropyMask = Number.isNaN(threshold) ? tf.zerosLike(mask) : tf.mul(tf.cast(tf.greaterEqual(tf.mul(inp.entropy!, mask), threshold), "float32"), mask);
      perToken = tf.mul(perToken, entropyMask);
    }
    if (inp.importanceSamplingRatio) perToken = tf.mul(perToken, inp.importanceSamplingRatio);
    const kl = inp.refLogp ? perTokenKl(inp.logp, inp.refLogp) : null;
    if (opts.beta > 0 && kl) perToken = tf.add(perToken, tf.mul(kl, opts.beta));
    // Broadcast [B, 1] (sequence level without KL) to [B, T] before aggregation.
    if (perToken.shape[1] !== mask.shape[1]) perToken = tf.mul(perToken, tf.onesLike(mask));
    const loss = aggregateLoss(perToken as tf.Tensor2D, mask, opts.lossType, opts.maxCompletionLength, opts.totals, opts.numItemsInBatch);

    // Diagnostics (no gradient needed; they use the tensors above).
    const d = (x: tf.Tensor) => stopGradient(x);
    const c1 = d(coef1);
    const seqLevel = level === "sequence";
    const sumM = (x: tf.Tensor) => (seqLevel ? tf.sum(x) : tf.sum(tf.mul(x, mask)));
    const clipCount = seqLevel ? tf.scalar(mask.shape[0]) : tf.sum(mask);
    const lowB = tf.logicalAnd(tf.less(c1, 1 - opts.epsilonLow), tf.less(adv, 0));
    const highB = tf.logicalAnd(tf.greater(c1, 1 + epsHigh), tf.greater(adv, 0));
    const cispoB = tf.logicalAnd(tf.greater(c1, epsHigh), tf.greater(adv, 0));
    const f = (b: tf.Tensor) => tf.cast(b, "float32");
    const stats = tf.stack([
      kl ? tf.sum(tf.mul(d(kl), mask)) : tf.scalar(0),
      sumM(f(lowB)),
      sumM(f(highB)),
      sumM(f(tf.logicalOr(lowB, highB))),
      sumM(f(cispoB)),
      sumM(c1),
      clipCount,
      inp.entropy ? tf.sum(tf.mul(inp.entropy, mask)) : tf.scalar(Number.NaN),
      tf.sum(mask),
      entropyMask ? tf.sum(entropyMask) : tf.sum(mask),
    ]) as tf.Tensor1D;
    return { loss, stats };
  });
  return out;
}

/**
 * The GRPO loss family with TRL's `_compute_loss` semantics (negated eq. 1 for "grpo"):
 * log w = logp − old per token, or its masked mean per sequence ("sequence", GSPO); r = exp(log w);
 * clipped surrogate −min(min(r, δ)·A, clip(r, 1−ε_low, 1+ε_high)·A), or for "cispo" −min(r, ε_high).detach()·A·logp;
 * times the entropy mask (topEntropyQuantile) and the vLLM importance-sampling ratio; plus β·KL_k3(ref‖π);
 * then aggregated with `lossType`. Differentiable in `logp`.
 */
export function grpoLoss(inp: GrpoLossInput, opts: GrpoLossOptions): tf.Scalar {
  const { loss, stats } = grpoLossAndStats(inp, opts);
  stats.dispose();
  return loss;
}

/** Diagnostics of one GRPO batch (plain numbers; TRL's names in the comments). */
export interface GrpoBatchMetrics {
  /** Masked mean over all counted tokens of the k3 KL (0 when there is no reference). TRL `kl`. */
  klMean: number;
  /** Share with ratio < 1−ε_low and A < 0 (TRL clip_ratio/low_mean); tokens, or sequences at sequence level. */
  clipLow: number;
  /** Share with ratio > 1+ε_high and A > 0 (TRL clip_ratio/high_mean). */
  clipHigh: number;
  /** low ∪ high (TRL clip_ratio/region_mean). */
  clipRegion: number;
  /** Share with ratio > ε_high and A > 0 (TRL cispo_clip_ratio; meaningful for "cispo"). */
  cispoClip: number;
  /** Mean of the importance weight. */
  ratioMean: number;
  /** Masked mean per-token entropy (TRL `entropy`); NaN without entropies. */
  entropy: number;
  /** Share of counted tokens kept by the entropy mask (1 without it). */
  entropyKept: number;
}

/** Adds stats tensors' values (row chunks of one micro-batch). */
export function addStats(acc: Float64Array | null, stats: ArrayLike<number>): Float64Array {
  const out = acc ?? new Float64Array(GRPO_STATS_SIZE);
  for (let i = 0; i < GRPO_STATS_SIZE; i++) out[i] += stats[i];
  return out;
}

/** Turns summed stats into means (TRL's global_masked_mean over the micro-batch). */
export function statsToMetrics(s: ArrayLike<number>): GrpoBatchMetrics {
  const c = Math.max(s[6], 1);
  const tok = Math.max(s[8], 1);
  return {
    klMean: s[0] / tok,
    clipLow: s[1] / c,
    clipHigh: s[2] / c,
    clipRegion: s[3] / c,
    cispoClip: s[4] / c,
    ratioMean: s[5] / c,
    entropy: s[7] / tok,
    entropyKept: s[9] / tok,
  };
}

/** Diagnostics of a batch, without keeping the loss. */
export function grpoMetrics(inp: GrpoLossInput, opts: Partial<GrpoLossOptions> & Pick<GrpoLossOptions, "epsilonLow">): GrpoBatchMetrics {
  const { loss, stats } = grpoLossAndStats(inp, { beta: 0, lossType: "grpo", ...opts } as GrpoLossOptions);
  const m = statsToMetrics(stats.dataSync());
  tf.dispose([loss, stats]);
  return m;
}

/** TRL's `vllm_importance_sampling_mode`. */
export type VllmImportanceSamplingMode = "token_truncate" | "token_mask" | "sequence_truncate" | "sequence_mask";
export const VLLM_IS_MODES: readonly VllmImportanceSamplingMode[] = ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"];

/**
 * The truncated/masked importance-sampling correction for rollouts sampled by another engine (vLLM), TRL's
 * `vllm_importance_sampling_*`: d = (old − sampling)·mask; r = exp(d) per token ("token_*", [B, T]) or exp(Σ_t d) per
 * sequence ("sequence_*", [B, 1]); "*_truncate" clamps r to [clipMin, clipMax], "*_mask" sets r to 0 outside it.
 * Null bounds are open. Constant (no gradient); the caller owns the result.
 */
export function vllmImportanceSamplingRatio(
  oldLogp: tf.Tensor2D,
  samplingLogp: tf.Tensor2D,
  mask: tf.Tensor2D,
  mode: VllmImportanceSamplingMode,
  clipMax: number | null = 3.0,
  clipMin: number | null = null,
): tf.Tensor2D {
  if (!VLLM_IS_MODES.includes(mode)) throw bad(`unknown vllmImportanceSamplingMode "${mode}" (expected one of ${VLLM_IS_MODES.join(", ")})`, "vllmImportanceSamplingMode");
  return tf.tidy(() => {
    const diff = tf.mul(tf.sub(oldLogp, samplingLogp), mask);
    const seq = mode.startsWith("sequence");
    const r = tf.exp(seq ? tf.sum(diff, 1, true) : diff);
    const lo = clipMin ?? Number.NEGATIVE_INFINITY;
    const hi = clipMax ?? Number.POSITIVE_INFINITY;
    if (mode.endsWith("truncate")) return tf.clipByValue(r, lo, hi) as tf.Tensor2D;
    const ok = tf.logicalAnd(tf.greaterEqual(r, lo), tf.lessEqual(r, hi));
    return tf.where(ok, r, tf.zerosLike(r)) as tf.Tensor2D;
  });
}

/**
 * Completion mask [B, T] (row-major Float32Array): 1 for the first `lengths[i]` tokens of row i.
 * With `maskTruncated`, rows whose completion did not end on EOS/stop (`truncated[i]`) are all 0
 * (TRL's mask_truncated_completions).
 */
export function completionMask(lengths: ArrayLike<number>, T: number, truncated?: ArrayLike<boolean>, maskTruncated = false): Float32Array {
  const B = lengths.length;
  const m = new Float32Array(B * T);
  for (let i = 0; i < B; i++) {
    if (lengths[i] > T || lengths[i] < 0) {
      throw new GrpoInputError(`completion ${i} has length ${lengths[i]}, outside [0, ${T}]`, { code: "GRPO_SHAPE", details: { row: i } });
    }
    if (maskTruncated && truncated?.[i]) continue;
    m.fill(1, i * T, i * T + lengths[i]);
  }
  return m;
}
