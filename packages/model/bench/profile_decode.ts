/**
 * Profiles one KV-cached decode step at 1 and G rows on the bench config: decoder forward, lm_head, readback,
 * host sampling (best of N, every configuration interleaved). Two configurations:
 *  - "now": what generate() runs (shareCache prompt cache, rowPass with expNonPositive);
 *  - "before": the prompt cache tiled per row (tileCache, batched attention) and the logits pass with Math.exp,
 *    i.e. the decode step before the shared-prefix cache (same lm_head).
 * `cd packages/model && npx tsx bench/profile_decode.ts` (env: G=8, N=6)
 */
import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import os from "node:os";
import { headLogits } from "../src/generation/lm_head";
import { resolveSamplingParams, type RowPass, sampleRow } from "../src/generation/sampling";
import type { KVCache } from "../src/qwen2_vl/index";
import { shareCache, tileCache } from "../src/qwen2_vl/model";
import { benchDecodeSetup } from "./random_checkpoint";

await initBackend();
const { cfg, model, pre } = benchDecodeSetup();
const base = pre.pastKeyValues!;
const G = Number(process.env.G ?? 8);
const caches: Record<string, KVCache> = {
  "now 1": shareCache(base, 1),
  [`now ${G}`]: shareCache(base, G),
  "before 1": base.clone(),
  [`before ${G}`]: tileCache(base, G),
};
const V = cfg.vocabSize;
const params = resolveSamplingParams({ temperature: 1 });
const scratch = new Float32Array(V);
const rng = new Rng(1);
/** The logits pass as it was before expNonPositive (Math.exp). */
function mathExpPass(raw: Float32Array): RowPass {
  let m = raw[0];
  let am = 0;
  for (let i = 1; i < V; i++) {
    if (raw[i] > m) {
      m = raw[i];
      am = i;
    }
  }
  let s = 0;
  for (let i = 0; i < V; i++) {
    const e = Math.exp(raw[i] - m);
    scratch[i] = e;
    s += e;
  }
  return { max: m, argmax: am, sumExp: s };
}
const best: Record<string, number> = {};
const rec = (k: string, v: number) => {
  best[k] = Math.min(best[k] ?? Number.POSITIVE_INFINITY, v);
};
function step(key: string, tok: number) {
  const cache = caches[key];
  const R = cache.batchSize;
  const t0 = performance.now();
  const x = tf.tensor2d(new Int32Array(R).fill(tok), [R, 1], "int32");
  const out = model.forward({ inputIds: x, pastKeyValues: cache, useCache: true, skipLogits: true, outputHiddenStates: true });
  const hs = out.hiddenStates!;
  const h = hs[hs.length - 1];
  h.dataSync();
  const t1 = performance.now();
  const logits = tf.tidy(() => headLogits(model, tf.reshape(h, [R, cfg.hiddenSize]) as tf.Tensor2D, true));
  logits.dataSync();
  const t2 = performance.now();
  const host = logits.dataSync() as Float32Array;
  const t3 = performance.now();
  for (let r = 0; r < R; r++) {
    const raw = host.subarray(r * V, (r + 1) * V);
    sampleRow(raw, [], params, rng, scratch, key.startsWith("before") ? mathExpPass(raw) : undefined);
  }
  const t4 = performance.now();
  logits.dispose();
  out.logits.dispose();
  tf.dispose([x, ...hs]);
  const t5 = performance.now();
  rec(`${key} forward`, t1 - t0);
  rec(`${key} lm_head`, t2 - t1);
  rec(`${key} readback`, t3 - t2);
  rec(`${key} sample`, t4 - t3);
  rec(`${key} total`, t5 - t0);
}
for (let i = 0; i < Number(process.env.N ?? 6); i++) for (const key of Object.keys(caches)) step(key, 3000 + i);
for (const [k, v] of Object.entries(best)) console.log(k.padEnd(18), v.toFixed(1), "ms");
for (const c of ["before", "now"]) {
  const one = best[`${c} 1 total`];
  const many = best[`${c} ${G} total`];
  console.log(`${c}: 1 row ${one.toFixed(1)} ms/step, ${G} rows ${many.toFixed(1)} ms/step -> G=${G} tokens/s = ${((G * one) / many).toFixed(2)}x single`);
}
console.log(`load average: ${os.loadavg().map((x) => x.toFixed(2)).join(" / ")}`);
