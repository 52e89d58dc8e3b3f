/**
 * Profiles one KV-cached decode step at 1 and G rows on the bench config: decoder forward, lm_head, readback,
 * host sampling (best of N, the two row counts interleaved). `npx tsx bench/profile_decode.ts`
 */
import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { headLogits } from "../src/generation/lm_head";
import { resolveSamplingParams, sampleRow } from "../src/generation/sampling";
import { buildQwen2VLFromSource, parseQwen2VLConfig, type KVCache } from "../src/qwen2_vl/index";
import { shareCache } from "../src/qwen2_vl/model";
import { benchConfigJson, randomSource } from "./random_checkpoint";

await initBackend();
const cfg = parseQwen2VLConfig(benchConfigJson(), "<bench config>");
const model = buildQwen2VLFromSource(cfg, randomSource(cfg, 7));
const ids: number[] = [];
while (ids.length < 256) ids.push(2000 + ids.length);
const inp = tf.tensor2d([ids], [1, 256], "int32");
const pre = model.forward({ inputIds: inp, useCache: true, logitsToKeep: 1 });
pre.logits.dispose();
const base = pre.pastKeyValues!;
const G = Number(process.env.G ?? 8);
// as generate(): the prompt cache shared by the rows (shareCache), at 1 and at G rows
const caches: Record<number, KVCache> = { 1: shareCache(base, 1), [G]: shareCache(base, G) };
const V = cfg.vocabSize;
const params = resolveSamplingParams({ temperature: 1 });
const scratch = new Float32Array(V);
const rng = new Rng(1);
const best: Record<string, number> = {};
const rec = (k: string, v: number) => {
  best[k] = Math.min(best[k] ?? Number.POSITIVE_INFINITY, v);
};
function step(R: number, tok: number) {
  const cache = caches[R];
  const t0 = performance.now();
  const x = tf.tensor2d(new Int32Array(R).fill(tok), [R, 1], "int32");
  const out = model.forward({ inputIds: x, pastKeyValues: cache, useCache: true, skipLogits: true, outputHiddenStates: true });
  const hs = out.hiddenStates!;
  const h = hs[hs.length - 1];
  const t1 = performance.now();
  const logits = tf.tidy(() => headLogits(model, tf.reshape(h, [R, cfg.hiddenSize]) as tf.Tensor2D, true));
  const t2 = performance.now();
  const host = logits.dataSync() as Float32Array;
  const t3 = performance.now();
  for (let r = 0; r < R; r++) sampleRow(host.subarray(r * V, (r + 1) * V), [], params, rng, scratch);
  const t4 = performance.now();
  logits.dispose();
  out.logits.dispose();
  tf.dispose([x, ...hs]);
  const t5 = performance.now();
  rec(`${R} forward`, t1 - t0);
  rec(`${R} lm_head`, t2 - t1);
  rec(`${R} readback`, t3 - t2);
  rec(`${R} sample`, t4 - t3);
  rec(`${R} dispose`, t5 - t4);
  rec(`${R} total`, t5 - t0);
}
for (let i = 0; i < Number(process.env.N ?? 6); i++) {
  step(1, 3000 + i);
  step(G, 3000 + i);
}
for (const [k, v] of Object.entries(best)) console.log(k.padEnd(14), v.toFixed(1), "ms");
