/** Per-kernel time of one decode step at 1 and G rows (tf.profile). `npx tsx bench/profile_kernels.ts` */
import { initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { headLogits } from "../src/generation/lm_head";
import type { KVCache } from "../src/qwen2_vl/index";
import { shareCache } from "../src/qwen2_vl/model";
import { benchDecodeSetup } from "./random_checkpoint";

await initBackend();
const { cfg, model, pre } = benchDecodeSetup();
const G = Number(process.env.G ?? 8);
const caches: Record<number, KVCache> = { 1: shareCache(pre.pastKeyValues!, 1), [G]: shareCache(pre.pastKeyValues!, G) };
function step(R: number) {
  const x = tf.tensor2d(new Int32Array(R).fill(3000), [R, 1], "int32");
  const out = model.forward({ inputIds: x, pastKeyValues: caches[R], useCache: true, skipLogits: true, outputHiddenStates: true });
  const hs = out.hiddenStates!;
  const l = tf.tidy(() => headLogits(model, tf.reshape(hs[hs.length - 1], [R, cfg.hiddenSize]) as tf.Tensor2D, true));
  l.dataSync();
  tf.dispose([x, l, out.logits, ...hs]);
}
for (const R of [1, G, 1, G]) step(R);
for (const R of [1, G]) {
  const agg = new Map<string, { ms: number; n: number }>();
  for (let rep = 0; rep < 3; rep++) {
    const info = await tf.profile(() => step(R));
    for (const k of info.kernels) {
      const key = `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join("")}`;
      const e = agg.get(key) ?? { ms: 0, n: 0 };
      e.ms += (k.kernelTimeMs as number) / 3;
      e.n += 1 / 3;
      agg.set(key, e);
    }
  }
  const rows = [...agg.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const total = rows.reduce((a, r) => a + r[1].ms, 0);
  console.log(`== ${R} rows: kernel total ${total.toFixed(1)} ms, ${rows.reduce((a, r) => a + r[1].n, 0).toFixed(0)} kernels`);
  for (const [k, v] of rows.slice(0, 25)) console.log(v.ms.toFixed(2).padStart(7), String(Math.round(v.n)).padStart(4), k);
}
