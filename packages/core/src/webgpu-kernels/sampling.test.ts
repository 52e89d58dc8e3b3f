import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { webgpuSkipReason } from "../testing/webgpu";
import { type DeviceSamplingParams, deviceSamplingAvailable, sampleRowsOnDevice } from "./sampling";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

type P = Required<DeviceSamplingParams>;

/**
 * A float64 reference of the selection rule, written independently of the kernel (and of @rarl/model's host sampler,
 * which the model package compares the kernel with): sort-based warpers, inverse CDF in id order. `du`, `dp`, `dm`
 * shift the draw, top-p and log(min-p) to probe how close the result is to a boundary.
 */
function reference(x: Float32Array, u: number, p: P, allowed: Uint8Array | null, du = 0, dp = 0, dm = 0): number {
  const V = x.length;
  let ids = Array.from({ length: V }, (_, i) => i).filter((i) => !allowed || allowed[i] === 1);
  if (p.greedy) return ids.reduce((b, i) => (x[i] > x[b] ? i : b), ids[0]);
  const y = new Float64Array(V);
  for (const i of ids) y[i] = Math.fround(x[i] / p.temperature);
  if (p.topK > 0 && p.topK < ids.length) {
    const kth = ids.map((i) => y[i]).sort((a, b) => b - a)[p.topK - 1];
    ids = ids.filter((i) => y[i] >= kth);
  }
  const probs = (set: number[]) => {
    const m = Math.max(...set.map((i) => y[i]));
    const e = set.map((i) => Math.exp(y[i] - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };
  if (p.topP < 1) {
    const pr = probs(ids);
    const order = ids.map((id, j) => ({ id, q: pr[j] })).sort((a, b) => b.q - a.q || a.id - b.id);
    const keep = new Set<number>();
    let above = 0;
    for (let j = 0; j < order.length; j++) {
      if (j > 0 && above >= p.topP + dp) break;
      keep.add(order[j].id);
      above += order[j].q;
    }
    ids = ids.filter((i) => keep.has(i));
  }
  if (p.minP > 0) {
    const m = Math.max(...ids.map((i) => y[i]));
    ids = ids.filter((i) => y[i] - m >= Math.log(p.minP) + dm);
  }
  const pr = probs(ids);
  let r = Math.min(Math.max(u + du, 0), 1 - 1e-12) * pr.reduce((a, b) => a + b, 0);
  for (let j = 0; j < ids.length; j++) {
    r -= pr[j];
    if (r < 0) return ids[j];
  }
  return ids[ids.length - 1];
}

/** Float32 rounding of sums over up to 1000 terms and of exp: draws and thresholds this close may flip. */
const TOL = 1e-5;

function fragile(x: Float32Array, u: number, p: P, allowed: Uint8Array | null): boolean {
  const t = reference(x, u, p, allowed);
  for (const d of [-TOL, TOL]) {
    if (reference(x, u, p, allowed, d, 0, 0) !== t) return true;
    if (reference(x, u, p, allowed, 0, d, 0) !== t) return true;
    if (reference(x, u, p, allowed, 0, 0, d) !== t) return true;
  }
  return false;
}

function rawLogprob(x: Float32Array, id: number): number {
  let m = Number.NEGATIVE_INFINITY;
  for (const v of x) m = Math.max(m, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  return x[id] - m - Math.log(s);
}

const base: P = { greedy: false, temperature: 1, topK: 0, topP: 1, minP: 0 };
const configs: Array<[string, P, boolean]> = [
  ["greedy", { ...base, greedy: true }, false],
  ["greedy + suppressed ids", { ...base, greedy: true }, true],
  ["plain sampling", base, false],
  ["temperature 0.7 + suppressed ids (GRPO)", { ...base, temperature: 0.7 }, true],
  ["top-k 20 (with tied logits)", { ...base, topK: 20 }, false],
  ["top-p 0.9, temperature 2", { ...base, topP: 0.9, temperature: 2 }, false],
  ["min-p 0.05", { ...base, minP: 0.05 }, false],
  ["all warpers + suppressed ids", { greedy: false, temperature: 0.8, topK: 50, topP: 0.8, minP: 0.02 }, true],
];

describe.skipIf(why !== null)(`webgpu sampling kernel vs a float64 reference${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const V of [300, 1000]) {
    for (const [name, p, masked] of configs) {
      it(`V = ${V}, ${name}: same ids except within float32 rounding of a boundary, raw log-probs within 1e-5`, async () => {
        await tf.setBackend("webgpu");
        expect(deviceSamplingAvailable()).toBe(true);
        const rng = new Rng(V * 7 + name.length);
        const B = 16;
        // Rows of different sharpness; row 1: 25 equal maxima (ties for top-k and greedy).
        const x = Float32Array.from({ length: B * V }, (_, i) => rng.normal() * (1 + (Math.floor(i / V) % 4)));
        x.fill(9, V, V + 25);
        // Row 2: 100 equal logits carrying most of the mass (top-p keeps only some of them, in id order).
        x.fill(12, 2 * V, 2 * V + 100);
        const allowed = masked ? Uint8Array.from({ length: V }, (_, i) => (i % 7 === 3 ? 0 : 1)) : null;
        if (allowed) allowed[0] = 0; // id 0 (the first of row 1's tied maxima) suppressed too
        const u = Array.from({ length: B }, (_, r) => (r === B - 1 ? 1 - 1e-9 : r === B - 2 ? 0 : rng.random()));
        const lt = tf.tensor2d(x, [B, V]);
        const at = allowed ? tf.tensor1d(Float32Array.from(allowed)) : undefined;
        const n0 = tf.memory().numTensors;
        const out = sampleRowsOnDevice(lt, u, p, at);
        const res = (await out.data()) as Float32Array;
        out.dispose();
        expect(tf.memory().numTensors).toBe(n0);
        tf.dispose([lt, at].filter((t) => t !== undefined) as tf.Tensor[]);
        let flips = 0;
        for (let r = 0; r < B; r++) {
          const row = x.subarray(r * V, (r + 1) * V);
          const want = reference(row, u[r], p, allowed);
          const got = res[2 * r];
          if (got !== want) {
            expect(fragile(row, u[r], p, allowed), `row ${r}: got ${got}, reference ${want}`).toBe(true);
            flips++;
          }
          if (allowed) expect(allowed[got]).toBe(1);
          expect(Math.abs(res[2 * r + 1] - rawLogprob(row, got))).toBeLessThan(1e-5);
        }
        expect(flips).toBeLessThanOrEqual(1);
      });
    }
  }
});
