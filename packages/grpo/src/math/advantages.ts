import { GrpoInputError } from "../errors";

/** How rewards are scaled into advantages (TRL's `scale_rewards`). */
export type ScaleRewards = "group" | "batch" | "none";

/** How several rewards become one advantage (TRL's `multi_objective_aggregation`). */
export type MultiObjectiveAggregation = "sum_then_normalize" | "normalize_then_sum";

export interface AdvantageResult {
  /** One advantage per completion, in the input order. */
  advantages: Float64Array;
  /** The group mean of each completion's group, repeated per completion. */
  groupMean: Float64Array;
  /** The std used (group or batch, Bessel-corrected), repeated per completion; for "none" the group std (logged only). */
  std: Float64Array;
  /** Fraction of groups whose reward std is ~0 (all G completions scored the same: no learning signal). */
  fracZeroStdGroups: number;
}

/** Unbiased (Bessel, n-1) standard deviation, as torch.Tensor.std(). n = 1 gives 0 (TRL's guard). */
export function unbiasedStd(xs: ArrayLike<number>, start = 0, end = xs.length): number {
  const n = end - start;
  if (n <= 1) return 0;
  let mean = 0;
  for (let i = start; i < end; i++) mean += xs[i];
  mean /= n;
  let ss = 0;
  for (let i = start; i < end; i++) ss += (xs[i] - mean) ** 2;
  return Math.sqrt(ss / (n - 1));
}

/**
 * Group-relative advantages, eq. 2 of the RARL paper with TRL's semantics:
 * A_i = (r_i − mean_group) / (std + eps), where std is the unbiased std of the group ("group"),
 * of the whole batch ("batch"), or no division at all ("none", Dr. GRPO). The mean is always the
 * group mean. Rewards are laid out group by group: [g0 s0, g0 s1, ..., g0 s(G-1), g1 s0, ...].
 * TRL uses eps = 1e-4.
 */
export function computeAdvantages(
  rewards: ArrayLike<number>,
  numGenerations: number,
  scale: ScaleRewards = "group",
  eps = 1e-4,
): AdvantageResult {
  const n = rewards.length;
  const G = numGenerations;
  if (!Number.isInteger(G) || G < 1) throw new GrpoInputError(`numGenerations must be a positive integer, got ${G}`, { code: "GRPO_BAD_G" });
  if (n % G !== 0) {
    throw new GrpoInputError(`rewards length ${n} is not a multiple of numGenerations ${G}`, {
      code: "GRPO_BAD_REWARDS",
      details: { length: n, numGenerations: G },
    });
  }
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(rewards[i])) {
      throw new GrpoInputError(`reward ${i} is not finite (${rewards[i]})`, { code: "GRPO_BAD_REWARDS", details: { index: i } });
    }
  }
  const advantages = new Float64Array(n);
  const groupMean = new Float64Array(n);
  const std = new Float64Array(n);
  const batchStd = scale === "batch" ? unbiasedStd(rewards) : 0;
  let zero = 0;
  for (let g = 0; g < n / G; g++) {
    const s = g * G;
    let m = 0;
    for (let i = s; i < s + G; i++) m += rewards[i];
    m /= G;
    const gs = unbiasedStd(rewards, s, s + G);
    if (Math.abs(gs) <= 1e-8) zero++;
    const sd = scale === "batch" ? batchStd : gs;
    for (let i = s; i < s + G; i++) {
      groupMean[i] = m;
      std[i] = sd;
      advantages[i] = scale === "none" ? rewards[i] - m : (rewards[i] - m) / (sd + eps);
    }
  }
  return { advantages, groupMean, std, fracZeroStdGroups: n === 0 ? 0 : zero / (n / G) };
}

/** Weighted sum of reward components per completion (TRL: nansum of weight × reward; NaN = "not applicable"). */
export function combineRewards(components: Record<string, ArrayLike<number>>, weights: Record<string, number> = {}): Float64Array {
  const names = Object.keys(components);
  if (names.length === 0) return new Float64Array(0);
  const n = components[names[0]].length;
  const out = new Float64Array(n);
  for (const name of names) {
    const col = components[name];
    if (col.length !== n) {
      throw new GrpoInputError(`reward component "${name}" has ${col.length} values, expected ${n}`, {
        code: "GRPO_BAD_REWARDS",
        details: { component: name },
      });
    }
    const w = weights[name] ?? 1;
    for (let i = 0; i < n; i++) if (!Number.isNaN(col[i])) out[i] += w * col[i];
  }
  return out;
}

/** Mean, std (population), min, max of an array; NaNs ignored. */
export function summary(xs: ArrayLike<number>): { mean: number; std: number; min: number; max: number } {
  let n = 0;
  let s = 0;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i];
    if (Number.isNaN(v)) continue;
    n++;
    s += v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (n === 0) return { mean: Number.NaN, std: Number.NaN, min: Number.NaN, max: Number.NaN };
  const mean = s / n;
  let ss = 0;
  for (let i = 0; i < xs.length; i++) if (!Number.isNaN(xs[i])) ss += (xs[i] - mean) ** 2;
  return { mean, std: Math.sqrt(ss / n), min, max };
}

/** Bessel-corrected std ignoring NaNs (TRL's nanstd); 0 for fewer than 2 values. */
function nanStats(xs: ArrayLike<number>, idx: number[]): { mean: number; std: number } {
  let n = 0;
  let s = 0;
  for (const i of idx) if (!Number.isNaN(xs[i])) {
    n++;
    s += xs[i];
  }
  if (n === 0) return { mean: Number.NaN, std: Number.NaN };
  const mean = s / n;
  let ss = 0;
  for (const i of idx) if (!Number.isNaN(xs[i])) ss += (xs[i] - mean) ** 2;
  return { mean, std: n > 1 ? Math.sqrt(ss / (n - 1)) : 0 };
}

/**
 * Advantages from several reward components with TRL's `multi_objective_aggregation`:
 * - "sum_then_normalize": the weighted nansum of the components, then {@link computeAdvantages} with `scale`;
 * - "normalize_then_sum" (GDPO): each component c is normalised within its group, (c − nanmean_g)/(nanstd_g + 1e-4),
 *   the weighted nansum of those is normalised over the whole batch, (s − mean)/(std + 1e-4); `scale` is not used.
 * `fracZeroStdGroups` is always the share of groups whose weighted total reward is constant (no signal).
 */
export function aggregateAdvantages(
  components: Record<string, ArrayLike<number>>,
  weights: Record<string, number>,
  numGenerations: number,
  scale: ScaleRewards,
  aggregation: MultiObjectiveAggregation,
  eps = 1e-4,
): AdvantageResult & { total: Float64Array } {
  const total = combineRewards(components, weights);
  const base = computeAdvantages(total, numGenerations, scale, eps);
  if (aggregation === "sum_then_normalize") return { ...base, total };
  if (aggregation !== "normalize_then_sum") {
    throw new GrpoInputError(`unknown multiObjectiveAggregation "${aggregation}" (expected sum_then_normalize or normalize_then_sum)`, { code: "GRPO_BAD_OPTION" });
  }
  const n = total.length;
  const G = numGenerations;
  const summed = new Float64Array(n);
  for (const [name, col] of Object.entries(components)) {
    const w = weights[name] ?? 1;
    for (let g = 0; g < n / G; g++) {
      const idx = Array.from({ length: G }, (_, k) => g * G + k);
      const { mean, std } = nanStats(col, idx);
      for (const i of idx) {
        const z = (col[i] - mean) / (std + eps);
        if (!Number.isNaN(z)) summed[i] += w * z;
      }
    }
  }
  const all = Array.from({ length: n }, (_, i) => i);
  const { mean, std } = nanStats(summed, all);
  const advantages = summed.map((x) => (x - mean) / (std + eps));
  return { ...base, advantages, std: new Float64Array(n).fill(std), total };
}
