import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { webgpuSkipReason } from "../testing/webgpu";
import { combineLogSoftmaxStats, logSoftmaxGatherComposite, logSoftmaxGatherStats } from "./logsoftmax_gather";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

type Out = { logp: Float32Array; entropy: Float32Array; stats: Float32Array[] };

/** Log-probs at `ids` and entropies of rows [N, V] split into vocabulary chunks of `chunk` columns. */
async function run(backend: string, stats: typeof logSoftmaxGatherStats, x: Float32Array, ids: Int32Array, N: number, V: number, chunk: number): Promise<Out> {
  await tf.setBackend(backend);
  const lt = tf.tensor2d(x, [N, V]);
  const it = tf.tensor1d(ids, "int32");
  const parts: tf.Tensor2D[] = [];
  for (let s = 0; s < V; s += chunk) parts.push(tf.tidy(() => stats(tf.slice(lt, [0, s], [N, Math.min(chunk, V - s)]) as tf.Tensor2D, it, s)));
  const c = combineLogSoftmaxStats(parts);
  const logp = tf.sub(c.target, c.lse);
  const entropy = tf.sub(c.lse, c.meanLogit);
  const out = { logp: (await logp.data()) as Float32Array, entropy: (await entropy.data()) as Float32Array, stats: await Promise.all(parts.map(async (p) => (await p.data()) as Float32Array)) };
  tf.dispose([lt, it, ...parts, c.lse, c.target, c.meanLogit, logp, entropy]);
  return out;
}

function data(N: number, V: number, seed: number): { x: Float32Array; ids: Int32Array } {
  const rng = new Rng(seed);
  // Rows of different scales; row 0 peaked at its last column (the max arrives late: online rescaling).
  const x = Float32Array.from({ length: N * V }, (_, i) => rng.normal() * 3 ** (Math.floor(i / V) % 3));
  x[V - 1] = 40;
  const ids = Int32Array.from({ length: N }, (_, r) => (r === 0 ? V - 1 : Math.floor(rng.random() * V)));
  return { x, ids };
}

/** float64 log-prob and entropy of one row. */
function exact(row: Float32Array, id: number): { logp: number; entropy: number } {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  let w = 0;
  for (const v of row) {
    s += Math.exp(v - m);
    w += Math.exp(v - m) * v;
  }
  const lse = m + Math.log(s);
  return { logp: row[id] - lse, entropy: lse - w / s };
}

describe("logSoftmaxGatherStats off webgpu", () => {
  it("is the tfjs composite on cpu, and its chunks combine to the float64 log-prob and entropy", async () => {
    const { x, ids } = data(3, 50, 1);
    const a = await run("cpu", logSoftmaxGatherStats, x, ids, 3, 50, 16);
    const b = await run("cpu", logSoftmaxGatherComposite, x, ids, 3, 50, 16);
    expect(a).toEqual(b);
    for (let r = 0; r < 3; r++) {
      const e = exact(x.subarray(r * 50, (r + 1) * 50), ids[r]);
      expect(Math.abs(a.logp[r] - e.logp)).toBeLessThan(1e-5);
      expect(Math.abs(a.entropy[r] - e.entropy)).toBeLessThan(1e-5);
    }
  });
});

describe.skipIf(why !== null)(`webgpu fused log-softmax + gather vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const [N, V, chunk] of [
    [4, 7, 7],
    [5, 300, 300],
    [3, 1000, 256],
    [6, 2000, 700],
  ]) {
    it(`[${N}, ${V}] in chunks of ${chunk}: log-probs and entropies within 1e-5 of cpu`, async () => {
      const { x, ids } = data(N, V, N * 1000 + V);
      const cpu = await run("cpu", logSoftmaxGatherComposite, x, ids, N, V, chunk);
      const gpu = await run("webgpu", logSoftmaxGatherStats, x, ids, N, V, chunk);
      for (let r = 0; r < N; r++) {
        expect(Math.abs(gpu.logp[r] - cpu.logp[r])).toBeLessThan(1e-5);
        expect(Math.abs(gpu.entropy[r] - cpu.entropy[r])).toBeLessThan(1e-5);
      }
      // Per-chunk statistics: max and target exact, sums relatively within 1e-5.
      gpu.stats.forEach((g, i) => {
        const c = cpu.stats[i];
        for (let r = 0; r < N; r++) {
          expect(Math.abs(g[4 * r] - c[4 * r])).toBe(0);
          expect(Math.abs(g[4 * r + 2] - c[4 * r + 2])).toBe(0); // (cpu's 0 for an id outside the chunk may be -0)
          expect(Math.abs(g[4 * r + 1] - c[4 * r + 1])).toBeLessThan(1e-5 * c[4 * r + 1]);
          expect(Math.abs(g[4 * r + 3] - c[4 * r + 3])).toBeLessThan(1e-5 * (Math.abs(c[4 * r + 3]) + c[4 * r + 1]));
        }
      });
    });
  }

  it("runs one RarlLogSoftmaxGather per chunk and leaks no tensors across calls", async () => {
    await tf.setBackend("webgpu");
    const lt = tf.tensor2d(data(2, 100, 3).x, [2, 100]);
    const it = tf.tensor1d([5, 99], "int32");
    const prof = await tf.profile(() => logSoftmaxGatherStats(lt, it, 0));
    expect(prof.kernels.map((k) => k.name)).toEqual(["RarlLogSoftmaxGather"]);
    tf.dispose(prof.result as tf.Tensor);
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.dispose(logSoftmaxGatherStats(lt, it, 0));
      expect(tf.memory().numTensors).toBe(n0);
    }
    tf.dispose([lt, it]);
  });
});
