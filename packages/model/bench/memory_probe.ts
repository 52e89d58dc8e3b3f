/**
 * Peak tensor memory of one GRPO-sized forward+backward (1 row: 256-token image prompt + 64 completion tokens, LoRA r=8
 * on q,k,v,o, variableGrads of the summed completion log-probs) on the issue-3 bench config.
 * `cd packages/model && npx tsx bench/memory_probe.ts` prints weights, forward-only peak and fwd+bwd peak (tf.profile).
 */
import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { completionLogprobs } from "../src/generation/completion";
import type { TokenizedPrompt } from "../src/generation/types";
import { buildQwen2VLFromSource, parseQwen2VLConfig } from "../src/qwen2_vl/index";
import { benchConfigJson, benchImagePrompt, randomSource } from "./random_checkpoint";

await initBackend();
// Real buffer bytes on wasm (tf.memory().numBytes counts every tensor, views such as reshapes included): track the
// backend's allocations (move) and frees (disposeData) and their high-water mark.
const real = { live: 0, peak: 0 };
if (tf.getBackend() === "wasm") {
  type Be = { move: (...a: unknown[]) => void; disposeData: (id: unknown, force?: boolean) => boolean; dataIdMap: { get(id: unknown): { shape: number[] } | undefined } };
  const be = tf.backend() as unknown as Be;
  const move = be.move.bind(be);
  const disposeData = be.disposeData.bind(be);
  be.move = (...a: unknown[]) => {
    move(...a);
    if (a[3] !== "string") real.live += (a[2] as number[]).reduce((x, y) => x * y, 1) * 4;
    real.peak = Math.max(real.peak, real.live);
  };
  be.disposeData = (id: unknown, force?: boolean) => {
    const d = be.dataIdMap.get(id);
    const freed = disposeData(id, force);
    if (freed && d) real.live -= d.shape.reduce((x, y) => x * y, 1) * 4;
    return freed;
  };
}
const cfg = parseQwen2VLConfig(benchConfigJson(), "<bench config>");
const model = buildQwen2VLFromSource(cfg, randomSource(cfg, 7));
const weightsMB = tf.memory().numBytes / 2 ** 20;
const prompt: TokenizedPrompt = benchImagePrompt(cfg, new Rng(5));
const completion = Array.from({ length: 64 }, (_, i) => 3000 + i);
const vars: tf.Variable[] = [];
for (const [name, lin] of model.namedLinears()) {
  if (!/^model\.layers\.\d+\.self_attn\.[qkvo]_proj$/.test(name)) continue;
  const A = tf.variable(tf.randomUniform([8, lin.inFeatures], -0.05, 0.05, "float32", 1), true);
  const B = tf.variable(tf.randomNormal([lin.outFeatures, 8], 0, 0.01, "float32", 2), true);
  lin.lora = { A, B, scale: 2, dropout: 0 };
  vars.push(A, B);
}
const batch = { prompts: [prompt], completions: [completion] };
const base = tf.memory().numBytes;
const realBase = real.live;
real.peak = real.live;
const fwd = await tf.profile(() => {
  const r = completionLogprobs(model, batch);
  const v = tf.sum(r.logprobs);
  v.dataSync();
  tf.dispose([r.logprobs, r.mask, v]);
});
const fwdPeak = fwd.peakBytes; // tf.profile returns the same object each call: copy before the next profile
const realFwd = real.peak - realBase;
real.peak = real.live;
const realBase2 = real.live;

let t0 = performance.now();
let grads: tf.NamedTensorMap = {};
let sum = 0;
const fb = await tf.profile(() => {
  const { value, grads: g } = tf.variableGrads(() => tf.sum(completionLogprobs(model, batch).logprobs) as tf.Scalar, vars);
  sum = value.dataSync()[0];
  value.dispose();
  grads = g;
});
const fbMs = performance.now() - t0;
const realFb = real.peak - realBase2;
const gnorm = tf.tidy(() => tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g))))).dataSync()[0]);
tf.dispose(Object.values(grads));
t0 = performance.now();
const { value, grads: g2 } = tf.variableGrads(() => tf.sum(completionLogprobs(model, batch).logprobs) as tf.Scalar, vars);
value.dispose();
tf.dispose(Object.values(g2));
const fb2 = performance.now() - t0;
const mb = (b: number) => (b / 2 ** 20).toFixed(0);
const top = [...fb.kernels].sort((a, b) => b.bytesAdded - a.bytesAdded).slice(0, 6).map((k) => `${k.name} ${k.outputShapes.map((s) => `[${s}]`).join(",")} +${mb(k.bytesAdded)}MB`);
console.log(JSON.stringify({ realBuffersMB: { weights: mb(realBase), fwdPeakAbove: mb(realFwd), fbPeakAbove: mb(realFb), afterFwdCachedMB: mb(realBase2 - realBase) }, weightsMB: Math.round(weightsMB), fwdPeakAboveMB: mb(fwdPeak - base), fbPeakAboveMB: mb(fb.peakBytes - base), fbPeakTotalMB: mb(fb.peakBytes), fbMs: Math.round(fbMs), fbMs2: Math.round(fb2), sum, gnorm, top }, null, 1));
if (process.env.PROBE_DETAIL) {
  const ks = fb.kernels;
  let pk = 0;
  ks.forEach((k, i) => { if (k.totalBytesSnapshot > ks[pk].totalBytesSnapshot) pk = i; });
  const byName: Record<string, number> = {};
  for (const k of ks.slice(0, pk + 1)) byName[k.name] = (byName[k.name] ?? 0) + k.bytesAdded;
  console.log("peak at kernel", pk, "of", ks.length, ks[pk].name, Object.entries(byName).sort((a, b) => b[1] - a[1]).slice(0, 12).map(([n, b]) => `${n} ${mb(b)}MB`).join("; "));
  const shapes: Record<string, number> = {};
  for (const k of ks.slice(0, pk + 1)) { const key = `${k.name} ${k.outputShapes.map((s) => `[${s}]`).join(",")}`; shapes[key] = (shapes[key] ?? 0) + k.bytesAdded; }
  console.log(Object.entries(shapes).sort((a, b) => b[1] - a[1]).slice(0, 15).map(([n, b]) => `${n} ${mb(b)}MB`).join("\n"));
}
