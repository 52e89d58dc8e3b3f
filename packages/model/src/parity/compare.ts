/**
 * Pure comparison helpers of the parity tool: tolerances by field name, masked max |Δ|, top-k id agreement.
 */

/** Tolerances (absolute) of the parity tool. Integer tensors are compared exactly (tolerance 0). */
export const TOLERANCES = {
  /** logits, logits_cols, logits_last, logsumexp, top_vals, step_* values. */
  logits: 1e-4,
  /** completion_logprobs, step log-probs. */
  logprobs: 1e-4,
  /** hidden_states and vision-tower intermediates. */
  hidden: 1e-3,
  /** pixel_values recomputed from image files. */
  pixels: 1e-5,
  /** ids, positions, grids, masks, rendered text: exact. */
  exact: 0,
} as const;

/** Tolerance of a reference field, by its name (and whether it holds integers). */
export function toleranceFor(field: string, isInteger: boolean): number {
  if (isInteger) return TOLERANCES.exact;
  const f = field.toLowerCase();
  if (f.includes("pixel_values")) return TOLERANCES.pixels;
  if (f.includes("hidden_states") || f.startsWith("vision.") || f.includes(".vision.")) return TOLERANCES.hidden;
  if (f.includes("logprob")) return TOLERANCES.logprobs;
  return TOLERANCES.logits;
}

/**
 * max |a - b| over elements whose `keep(i)` is true (all by default). A NaN on either side, or a length
 * mismatch, gives Infinity (a failure, never a silent pass).
 */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, keep?: (i: number) => boolean): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (keep && !keep(i)) continue;
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return m;
}

/**
 * Mask predicate for a row-major tensor whose leading dims (after `lead` extra leading dims) are [B, S],
 * keeping only positions with attention mask 1 (left padding is not meaningful in the reference).
 * @param mask [B][S] 0/1.
 * @param inner product of the dims after [B, S].
 * @param leadCount product of the dims before [B, S] (e.g. L+1 for hidden_states, 3 for position_ids).
 */
export function maskedKeep(mask: number[][], inner: number): (i: number) => boolean {
  const B = mask.length;
  const S = B > 0 ? mask[0].length : 0;
  return (i: number) => {
    const pos = Math.floor(i / inner) % (B * S);
    const b = Math.floor(pos / S);
    const s = pos % S;
    return mask[b][s] === 1;
  };
}

/**
 * Compares top-k ids where the reference ranking is unambiguous: rank j of a row is checked only when
 * the reference values around it are separated by more than `gap` (ties within numerical noise may
 * legitimately swap). Returns the number of disagreeing ids among those checked (0 = exact).
 */
export function topIdMismatches(refIds: ArrayLike<number>, refVals: ArrayLike<number>, ids: ArrayLike<number>, k: number, gap: number, keepRow?: (row: number) => boolean): number {
  let bad = 0;
  const rows = refIds.length / k;
  for (let r = 0; r < rows; r++) {
    if (keepRow && !keepRow(r)) continue;
    for (let j = 0; j < k; j++) {
      const i = r * k + j;
      const above = j === 0 ? Number.POSITIVE_INFINITY : refVals[i - 1] - refVals[i];
      const below = j === k - 1 ? Number.POSITIVE_INFINITY : refVals[i] - refVals[i + 1];
      if (above <= gap || below <= gap) continue;
      if (refIds[i] !== ids[i]) bad++;
    }
  }
  return bad;
}

/** Converts an integer typed array (BigInt64Array included) to numbers. */
export function toNumbers(a: ArrayLike<number | bigint>): number[] {
  const out = new Array<number>(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
  return out;
}

/** Splits a flat array into rows of `width`. */
export function toRows(a: ArrayLike<number>, width: number): number[][] {
  const rows: number[][] = [];
  for (let i = 0; i < a.length; i += width) rows.push(Array.from({ length: width }, (_, j) => a[i + j]));
  return rows;
}
