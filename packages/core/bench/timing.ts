/**
 * Best (minimum) wall time (ms) of `fn` after `warmup` calls, repeating until `minMs` elapsed or `maxReps` runs.
 * The minimum, not the median: on a shared machine the other jobs only ever add time, so the best run is the
 * closest to the uncontended cost.
 */
export function timeMs(fn: () => void, opts: { warmup?: number; minMs?: number; maxReps?: number; minReps?: number } = {}): number {
  const { warmup = 1, minMs = 400, maxReps = 50, minReps = 3 } = opts;
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minReps || (performance.now() - start < minMs && times.length < maxReps)) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return Math.min(...times);
}

export const gflops = (m: number, k: number, n: number, ms: number, batch = 1): number => (2 * batch * m * k * n) / (ms * 1e6);
