import * as tf from "@tensorflow/tfjs-core";
import { GrpoInputError } from "../errors";

/** How per-token losses are reduced to one number (TRL's `loss_type`). */
export type LossType = "grpo" | "bnpo" | "dr_grpo";

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
  /** One advantage per sequence, length B. */
  advantages: tf.Tensor1D | ArrayLike<number>;
  /** 1 for completion tokens that count, 0 for padding (and for truncated completions when masked), [B, T]. */
  mask: tf.Tensor2D;
}

export interface GrpoLossOptions {
  /** KL coefficient β. */
  beta: number;
  /** Lower clip ε: the ratio is clipped at 1 − ε_low. */
  epsilonLow: number;
  /** Upper clip ε_high (DAPO); defaults to ε_low. */
  epsilonHigh?: number;
  lossType: LossType;
  /** Denominator length for "dr_grpo" (TRL: max_completion_length). Required for that type. */
  maxCompletionLength?: number;
  /**
   * For evaluating a batch in row chunks (gradient accumulation over rows, exact): the whole batch's number of
   * sequences and of counted tokens. The chunk losses then sum to the whole batch's loss. Default: this chunk's own.
   */
  totals?: { sequences: number; tokens: number };
}

function checkShapes(inp: GrpoLossInput): void {
  const [B, T] = inp.logp.shape;
  const same = (t: tf.Tensor | null | undefined, name: string) => {
    if (t && (t.shape.length !== 2 || t.shape[0] !== B || t.shape[1] !== T)) {
      throw new GrpoInputError(`${name} has shape [${t.shape}], expected [${B}, ${T}] like logp`, {
        code: "GRPO_SHAPE",
        details: { tensor: name, shape: t.shape },
      });
    }
  };
  same(inp.oldLogp, "oldLogp");
  same(inp.refLogp, "refLogp");
  same(inp.mask, "mask");
  const nAdv = inp.advantages instanceof tf.Tensor ? inp.advantages.shape[0] : inp.advantages.length;
  if (nAdv !== B) {
    throw new GrpoInputError(`advantages has ${nAdv} values, expected ${B} (one per sequence)`, { code: "GRPO_SHAPE", details: { tensor: "advantages" } });
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
 * Reduces masked per-token losses [B, T] the way TRL does:
 * - grpo: mean over each sequence's own tokens, then mean over sequences;
 * - bnpo: sum over all tokens / number of counted tokens;
 * - dr_grpo: sum over all tokens / (B × maxCompletionLength).
 * Token counts are clamped to ≥ 1.
 */
export function aggregateLoss(
  perToken: tf.Tensor2D,
  mask: tf.Tensor2D,
  lossType: LossType,
  maxCompletionLength?: number,
  totals?: { sequences: number; tokens: number },
): tf.Scalar {
  return tf.tidy(() => {
    const masked = tf.mul(perToken, mask);
    const nSeq = totals?.sequences ?? perToken.shape[0];
    if (lossType === "grpo") {
      const perSeq = tf.div(tf.sum(masked, 1), tf.maximum(tf.sum(mask, 1), 1));
      return tf.div(tf.sum(perSeq), nSeq) as tf.Scalar;
    }
    if (lossType === "bnpo") return tf.div(tf.sum(masked), totals ? Math.max(totals.tokens, 1) : tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
    if (lossType === "dr_grpo") {
      if (!(maxCompletionLength && maxCompletionLength > 0)) {
        throw new GrpoInputError("lossType dr_grpo needs maxCompletionLength > 0", { code: "GRPO_BAD_OPTION", details: { field: "maxCompletionLength" } });
      }
      return tf.div(tf.sum(masked), nSeq * maxCompletionLength) as tf.Scalar;
    }
    throw new GrpoInputError(`unknown lossType "${lossType}" (expected grpo, bnpo or dr_grpo)`, { code: "GRPO_BAD_OPTION", details: { field: "lossType" } });
  });
}

/**
 * The GRPO loss (negated eq. 1, token level, TRL semantics):
 * ratio = exp(logp − old), per-token = −min(ratio·A, clip(ratio, 1−ε_low, 1+ε_high)·A) + β·KL_k3(ref‖π),
 * then aggregated with `lossType`. Differentiable in `logp`.
 */
export function grpoLoss(inp: GrpoLossInput, opts: GrpoLossOptions): tf.Scalar {
  checkShapes(inp);
  if (opts.beta > 0 && !inp.refLogp) {
    throw new GrpoInputError("beta > 0 needs refLogp (reference log-probs)", { code: "GRPO_BAD_OPTION", details: { field: "refLogp" } });
  }
  const epsHigh = opts.epsilonHigh ?? opts.epsilonLow;
  return tf.tidy(() => {
    const old = inp.oldLogp ?? stopGradient(inp.logp);
    const ratio = tf.exp(tf.sub(inp.logp, old));
    const clipped = tf.clipByValue(ratio, 1 - opts.epsilonLow, 1 + epsHigh);
    const adv = tf.reshape(inp.advantages instanceof tf.Tensor ? inp.advantages : tf.tensor1d(Array.from(inp.advantages), "float32"), [-1, 1]);
    let perToken = tf.neg(tf.minimum(tf.mul(ratio, adv), tf.mul(clipped, adv)));
    if (opts.beta > 0 && inp.refLogp) perToken = tf.add(perToken, tf.mul(perTokenKl(inp.logp, inp.refLogp), opts.beta));
    return aggregateLoss(perToken as tf.Tensor2D, inp.mask, opts.lossType, opts.maxCompletionLength, opts.totals);
  });
}

/** Diagnostics of one GRPO batch (plain numbers; computed without gradients). */
export interface GrpoBatchMetrics {
  /** Masked mean over all counted tokens of the k3 KL (0 when there is no reference). */
  klMean: number;
  /** Fraction of counted tokens with ratio < 1−ε_low and A < 0 (TRL clip_ratio/low_mean). */
  clipLow: number;
  /** Fraction with ratio > 1+ε_high and A > 0 (TRL clip_ratio/high_mean). */
  clipHigh: number;
  /** low ∪ high (TRL clip_ratio/region_mean). */
  clipRegion: number;
  /** Mean of the ratio over counted tokens. */
  ratioMean: number;
}

/**
 * The metrics of {@link grpoMetrics} as one float32 tensor [klMean, clipLow, clipHigh, clipRegion, ratioMean]
 * (the caller owns it), so the trainer can compute them inside its gradient pass without another forward.
 */
export function grpoMetricsTensor(inp: GrpoLossInput, opts: Pick<GrpoLossOptions, "epsilonLow" | "epsilonHigh">): tf.Tensor1D {
  checkShapes(inp);
  const epsHigh = opts.epsilonHigh ?? opts.epsilonLow;
  return tf.tidy(() => {
    const mask = inp.mask;
    const denom = tf.maximum(tf.sum(mask), 1);
    const mmean = (x: tf.Tensor) => tf.div(tf.sum(tf.mul(x, mask)), denom);
    const ratio = inp.oldLogp ? tf.exp(tf.sub(inp.logp, inp.oldLogp)) : tf.onesLike(inp.logp);
    const adv = tf.reshape(inp.advantages instanceof tf.Tensor ? inp.advantages : tf.tensor1d(Array.from(inp.advantages), "float32"), [-1, 1]);
    const lowB = tf.logicalAnd(tf.less(ratio, 1 - opts.epsilonLow), tf.less(adv, 0));
    const highB = tf.logicalAnd(tf.greater(ratio, 1 + epsHigh), tf.greater(adv, 0));
    const low = tf.cast(lowB, "float32");
    const high = tf.cast(highB, "float32");
    const region = tf.cast(tf.logicalOr(lowB, highB), "float32");
    const kl = inp.refLogp ? mmean(perTokenKl(inp.logp, inp.refLogp)) : tf.scalar(0);
    return tf.stack([kl, mmean(low), mmean(high), mmean(region), mmean(ratio)]) as tf.Tensor1D;
  });
}

/** Reads a {@link grpoMetricsTensor} result into named numbers. */
export function readGrpoMetrics(t: tf.Tensor1D): GrpoBatchMetrics {
  const v = t.dataSync();
  return { klMean: v[0], clipLow: v[1], clipHigh: v[2], clipRegion: v[3], ratioMean: v[4] };
}

export function grpoMetrics(inp: GrpoLossInput, opts: Pick<GrpoLossOptions, "epsilonLow" | "epsilonHigh">): GrpoBatchMetrics {
  const t = grpoMetricsTensor(inp, opts);
  const m = readGrpoMetrics(t);
  t.dispose();
  return m;
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
