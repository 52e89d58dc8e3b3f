import { Rng } from "@rarl/core";
import { DatasetError } from "./errors";

/**
 * Largest-remainder (Hamilton) apportionment: splits `total` across strata in proportion to their
 * sizes. Each stratum gets floor(total·n_k/N), and the units left over go to the largest fractional
 * remainders (ties: larger stratum first, then key order). Pure; never exceeds a stratum's size.
 */
export function largestRemainder(sizes: Record<string, number>, total: number): Record<string, number> {
  const keys = Object.keys(sizes).sort();
  const N = keys.reduce((a, k) => a + sizes[k], 0);
  if (!Number.isInteger(total) || total < 0 || total > N) {
    throw new DatasetError(`split size ${total} must be an integer in [0, ${N}]`, { code: "DATASET_BAD_OPTIONS" });
  }
  const out: Record<string, number> = {};
  if (N === 0) {
    for (const k of keys) out[k] = 0;
    return out;
  }
  const rem: Array<[string, number]> = [];
  let given = 0;
  for (const k of keys) {
    // exact rational arithmetic on integers: quota = total*n/N
    const num = total * sizes[k];
    out[k] = Math.floor(num / N);
    given += out[k];
    rem.push([k, num - out[k] * N]);
  }
  rem.sort((a, b) => b[1] - a[1] || sizes[b[0]] - sizes[a[0]] || (a[0] < b[0] ? -1 : 1));
  for (let i = 0; given < total; i++, given++) out[rem[i][0]]++;
  return out;
}

/** Options of {@link stratifiedSplit}. */
export interface SplitOptions<T> {
  /** Seed of the shuffle inside each stratum. Default 0. */
  seed?: number;
  /** The stratum of an item (e.g. `s => s.modality`). Default: one stratum. */
  stratifyBy?: (item: T) => string | undefined;
  /** Test set size as a count. Exactly one of testSize, testFraction, testCounts. */
  testSize?: number;
  /** Test set size as a fraction of all items; the count is round(fraction·N). */
  testFraction?: number;
  /**
   * Explicit test count per stratum (e.g. the paper's {MRI: 32, CT: 21, "X-ray": 97}). Needed to
   * reproduce the paper's split: no proportional rule gives its counts (see README).
   */
  testCounts?: Record<string, number>;
}

/** The result of a split: items in their original order. */
export interface SplitResult<T> {
  train: T[];
  test: T[];
  /** Test count per stratum. */
  testCounts: Record<string, number>;
}

/**
 * Seeded split stratified by a field. Per-stratum test counts come from `testCounts`, or from
 * {@link largestRemainder} applied to the total test size. Inside each stratum (in sorted key order),
 * items are shuffled with an Rng forked from `new Rng(seed)` and the first counts go to test.
 * Deterministic for a given seed and input order.
 */
export function stratifiedSplit<T>(items: readonly T[], opts: SplitOptions<T>): SplitResult<T> {
  const given = [opts.testSize, opts.testFraction, opts.testCounts].filter((x) => x !== undefined).length;
  if (given !== 1) {
    throw new DatasetError("give exactly one of testSize, testFraction or testCounts", { code: "DATASET_BAD_OPTIONS" });
  }
  const key = (x: T) => (opts.stratifyBy ? (opts.stratifyBy(x) ?? "(none)") : "(all)");
  const groups = new Map<string, number[]>();
  items.forEach((x, i) => {
    const k = key(x);
    const g = groups.get(k);
    if (g) g.push(i);
    else groups.set(k, [i]);
  });
  const sizes: Record<string, number> = {};
  for (const [k, g] of groups) sizes[k] = g.length;
  let counts: Record<string, number>;
  if (opts.testCounts) {
    counts = {};
    for (const k of Object.keys(sizes)) counts[k] = 0;
    for (const [k, c] of Object.entries(opts.testCounts)) {
      if (!(k in sizes)) throw new DatasetError(`testCounts names stratum ${JSON.stringify(k)}, which has no items`, { code: "DATASET_BAD_OPTIONS" });
      if (!Number.isInteger(c) || c < 0 || c > sizes[k]) {
        throw new DatasetError(`testCounts[${JSON.stringify(k)}] = ${c} must be an integer in [0, ${sizes[k]}]`, { code: "DATASET_BAD_OPTIONS" });
      }
      counts[k] = c;
    }
  } else {
    let total: number;
    if (opts.testFraction !== undefined) {
      if (!(opts.testFraction >= 0 && opts.testFraction <= 1)) {
        throw new DatasetError(`testFraction ${opts.testFraction} must be in [0, 1]`, { code: "DATASET_BAD_OPTIONS" });
      }
      total = Math.round(opts.testFraction * items.length);
    } else total = opts.testSize!;
    counts = largestRemainder(sizes, total);
  }
  const rng = new Rng(opts.seed ?? 0);
  const isTest = new Uint8Array(items.length);
  for (const k of [...groups.keys()].sort()) {
    const idx = rng.fork().shuffle([...groups.get(k)!]);
    for (let i = 0; i < counts[k]; i++) isTest[idx[i]] = 1;
  }
  const train: T[] = [];
  const test: T[] = [];
  items.forEach((x, i) => {
    (isTest[i] ? test : train).push(x);
  });
  return { train, test, testCounts: counts };
}

/** The paper's reasoning set (§2.1): 866 samples, 194 MRI / 143 CT / 529 X-ray. */
export const PAPER_MODALITY_COUNTS = { MRI: 194, CT: 143, "X-ray": 529 } as const;
/** The paper's test split (§2.1): 150 samples, 32 MRI / 21 CT / 97 X-ray (train 716: 162 / 122 / 432). */
export const PAPER_TEST_COUNTS = { MRI: 32, CT: 21, "X-ray": 97 } as const;

/** The paper's split of its reasoning set: stratified by modality with its published per-modality test counts. */
export function paperSplit<T extends { modality?: string }>(items: readonly T[], seed = 0): SplitResult<T> {
  return stratifiedSplit(items, { seed, stratifyBy: (s) => s.modality, testCounts: { ...PAPER_TEST_COUNTS } });
}
