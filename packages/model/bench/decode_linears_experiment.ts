/**
 * Experiment (not used by the library): the decoder linears of one decode step computed as h·Wᵀ with a transposed
 * copy of every weight ([in, out], made once), against the model's (W·hᵀ)ᵀ, at 1 and G rows, interleaved, best of N.
 * Full steps as generate() runs them (shared prompt cache, decoder + lm_head + host sampling).
 * `cd packages/model && npx tsx bench/decode_linears_experiment.ts`
 */
import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { headLogits } from "../src/generation/lm_head";
import { resolveSamplingParams, sampleRow } from "../src/generation/sampling";
import { Linear } from "../src/nn/linear";
import { type KVCache, shareCache } from "../src/qwen2_vl/index";
import { benchDecodeSetup } from "./random_checkpoint";

let transposedLinears = false;
const copies = new Map<Linear, tf.Tensor2D>();
const orig = Linear.prototype.applyT;
Linear.prototype.applyT = function (this: Linear, xT: tf.Tensor2D): tf.Tensor2D {
  if (!transposedLinears || this.lora || this.hostWeight) return orig.call(this, xT);
  let wt = copies.get(this);
  if (!wt) {
    wt = tf.keep(tf.tidy(() => tf.transpose(this.weight)) as tf.Tensor2D);
    copies.set(this, wt);
  }
  const w = wt;
  return tf.tidy(() => {
    let y = tf.matMul(tf.transpose(xT), w); // [N, out]
    if (this.bias) y = tf.add(y, this.bias);
    return tf.transpose(y) as tf.Tensor2D;
  });
};

await initBackend();
const { cfg, model, pre } = benchDecodeSetup();
const G = 8;
const caches: Record<number, KVCache> = { 1: shareCache(pre.pastKeyValues!, 1), [G]: shareCache(pre.pastKeyValues!, G) };
const V = cfg.vocabSize;
const params = resolveSamplingParams({});
const scratch = new Float32Array(V);
const rng = new Rng(1);
const best: Record<string, number> = {};
function step(R: number, tok: number, label: string) {
  transposedLinears = label === "h·Wᵀ";
  const t0 = performance.now();
  const x = tf.tensor2d(new Int32Array(R).fill(tok), [R, 1], "int32");
  const out = model.forward({ inputIds: x, pastKeyValues: caches[R], useCache: true, skipLogits: true, outputHiddenStates: true });
  const hs = out.hiddenStates!;
  hs[hs.length - 1].dataSync();
  const t1 = performance.now();
  const logits = tf.tidy(() => headLogits(model, tf.reshape(hs[hs.length - 1], [R, cfg.hiddenSize]) as tf.Tensor2D, true));
  const host = logits.dataSync() as Float32Array;
  for (let r = 0; r < R; r++) sampleRow(host.subarray(r * V, (r + 1) * V), [], params, rng, scratch);
  const t2 = performance.now();
  tf.dispose([x, logits, out.logits, ...hs]);
  for (const [k, v] of [[`${label} ${R} rows: forward`, t1 - t0], [`${label} ${R} rows: step`, t2 - t0]] as const) best[k] = Math.min(best[k] ?? Number.POSITIVE_INFINITY, v);
}
for (let i = 0; i < Number(process.env.N ?? 8); i++) for (const label of ["(W·hᵀ)ᵀ", "h·Wᵀ"]) for (const R of [1, G]) step(R, 3000 + i, label);
for (const [k, v] of Object.entries(best)) console.log(k.padEnd(28), v.toFixed(1), "ms");
for (const label of ["(W·hᵀ)ᵀ", "h·Wᵀ"]) console.log(`${label}: G=${G} / 1-sample tokens/s = ${((G * best[`${label} 1 rows: step`]) / best[`${label} ${G} rows: step`]).toFixed(2)}x`);
console.log(`extra tensor memory of the transposed copies: ${([...copies.values()].reduce((a, t) => a + t.size, 0) * 4 / 2 ** 20).toFixed(0)} MB (plus XNNPACK's packed copy)`);
