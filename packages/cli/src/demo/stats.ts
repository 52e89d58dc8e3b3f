import { Rng } from "@rarl/core";

/** Mean and standard error (sample s.d. / sqrt(n); 0 for n < 2) of numbers. Pure. */
export function meanSe(xs: number[]): { mean: number; se: number } {
  const n = xs.length;
  if (n === 0) return { mean: Number.NaN, se: Number.NaN };
  const mean = xs.reduce((a, x) => a + x, 0) / n;
  if (n < 2) return { mean, se: 0 };
  const v = xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(v / n) };
}

/** Per-question values of one seed, grouped by image (questions on one image are resampled together). */
export type SeedClusters = Map<string, number[]>;

/** Groups per-question values by their image. */
export function clusters(values: Array<{ image: string; value: number }>): SeedClusters {
  const m: SeedClusters = new Map();
  for (const v of values) {
    const c = m.get(v.image);
    if (c) c.push(v.value);
    else m.set(v.image, [v.value]);
  }
  return m;
}

/** Result of {@link hierarchicalBootstrap}. */
export interface BootstrapResult {
  /** The point estimate: the mean over seeds of each seed's mean over its questions. */
  mean: number;
  /** Standard deviation of the bootstrap means. */
  se: number;
  /** 2.5% and 97.5% percentiles of the bootstrap means. */
  ci95: [number, number];
  /** Number of bootstrap replicates. */
  b: number;
}

function seedMean(c: SeedClusters): number {
  let s = 0;
  let n = 0;
  for (const v of c.values()) for (const x of v) {
    s += x;
    n++;
  }
  return n === 0 ? 0 : s / n;
}

/**
 * Two-level bootstrap of a per-question quantity (e.g. the paired difference RARL − SFT of correctness): each replicate
 * resamples the seeds with replacement, then within each drawn seed resamples its images with replacement (all
 * questions of a drawn image come along, since two questions on one image are correlated), and averages the seeds'
 * question means. Deterministic for a given `seed`. Pure.
 */
export function hierarchicalBootstrap(perSeed: SeedClusters[], opts: { b?: number; seed?: number } = {}): BootstrapResult {
  const b = opts.b ?? 2000;
  if (perSeed.length === 0) throw new Error("hierarchicalBootstrap: no seeds");
  const rng = new Rng(opts.seed ?? 12345);
  const mean = perSeed.reduce((a, c) => a + seedMean(c), 0) / perSeed.length;
  const lists = perSeed.map((c) => [...c.values()]);
  const reps: number[] = [];
  for (let r = 0; r < b; r++) {
    let tot = 0;
    for (let k = 0; k < perSeed.length; k++) {
      const imgs = lists[rng.int(lists.length)];
      let s = 0;
      let n = 0;
      for (let i = 0; i < imgs.length; i++) {
        const v = imgs[rng.int(imgs.length)];
        for (const x of v) s += x;
        n += v.length;
      }
      tot += n === 0 ? 0 : s / n;
    }
    reps.push(tot / perSeed.length);
  }
  reps.sort((x, y) => x - y);
  const q = (p: number) => reps[Math.min(reps.length - 1, Math.max(0, Math.floor(p * (reps.length - 1))))];
  const m = reps.reduce((a, x) => a + x, 0) / b;
  const se = Math.sqrt(reps.reduce((a, x) => a + (x - m) ** 2, 0) / Math.max(1, b - 1));
  return { mean, se, ci95: [q(0.025), q(0.975)], b };
}

/** Inputs of the pre-registered verdict rule (shares in [0, 1]). */
export interface VerdictInputs {
  /** RARL − SFT on the out-of-distribution split (reasoning prompting): point estimate and 95% interval. */
  oodDelta: { mean: number; ci95: [number, number] };
  /** RARL − SFT in distribution (reasoning prompting). */
  idDelta: { mean: number };
  /** Mean share of the base's answers each arm changed (in distribution, reasoning prompting). */
  movement: { sft: number; rarl: number };
}

/**
 * The demo's pre-registered verdict rule (examples/demo/README.md):
 * - "inconclusive" if an arm changed fewer than 5% of the base's answers (it barely moved);
 * - "consistent with Table 3" if the out-of-distribution Δ's 95% interval is above 0 and the in-distribution
 *   Δ > −3 points;
 * - otherwise "not reproduced". Pure.
 */
export function verdict(v: VerdictInputs): { verdict: "consistent with Table 3" | "inconclusive" | "not reproduced"; why: string } {
  const pts = (x: number) => `${(100 * x).toFixed(1)}`;
  if (v.movement.sft < 0.05 || v.movement.rarl < 0.05)
    return { verdict: "inconclusive", why: `an arm barely moved: SFT changed ${pts(v.movement.sft)}%, RARL ${pts(v.movement.rarl)}% of the base's answers (< 5%)` };
  const ood = v.oodDelta.ci95[0] > 0;
  const id = v.idDelta.mean > -0.03;
  const why = `OOD Δ ${pts(v.oodDelta.mean)} points, 95% interval [${pts(v.oodDelta.ci95[0])}, ${pts(v.oodDelta.ci95[1])}] (${ood ? "above" : "not above"} 0); in-distribution Δ ${pts(v.idDelta.mean)} points (${id ? ">" : "≤"} −3)`;
  return { verdict: ood && id ? "consistent with Table 3" : "not reproduced", why };
}
