/**
 * Writes random grpoLoss cases (every lossType, level, delta, epsilonHigh, entropy quantile, vLLM IS ratio, beta,
 * numItemsInBatch, T = 1 and empty rows included) with tfjs's loss and d/dlogp to OUT (default /tmp/grpo-xcheck.json),
 * for check.py, a numpy transcription of TRL's `_compute_loss`. Manual cross-check (numpy is not a project
 * dependency): see README.md here.
 */
import fs from "node:fs";
import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { type GrpoLossOptions, grpoLoss } from "../../src/math/loss";

await initBackend();
const out = process.argv[2] ?? "/tmp/grpo-xcheck.json";
const rng = new Rng(Number(process.env.SEED ?? 777));
const cases: unknown[] = [];
const types = ["grpo", "bnpo", "dr_grpo", "dapo", "cispo"] as const;
for (let k = 0; k < 300; k++) {
  const B = 2 + Math.floor(rng.uniform(0, 4));
  const T = 1 + Math.floor(rng.uniform(0, 6));
  const m = (f: () => number) => Array.from({ length: B }, () => Array.from({ length: T }, f));
  const old = m(() => -0.1 - 3 * rng.uniform(0, 1));
  const logp = old.map((r) => r.map((x) => x + Math.log(rng.uniform(0.3, 3))));
  const mask = Array.from({ length: B }, () => {
    const L = Math.floor(rng.uniform(0, T + 1));
    return Array.from({ length: T }, (_, t) => (t < L ? 1 : 0));
  });
  const lossType = types[k % 5];
  const opts: GrpoLossOptions = {
    beta: rng.uniform(0, 1) < 0.5 ? 0 : rng.uniform(0, 0.2),
    epsilonLow: rng.uniform(0.05, 0.3),
    epsilonHigh: lossType === "cispo" ? rng.uniform(0.5, 5) : rng.uniform(0, 1) < 0.5 ? undefined : rng.uniform(0.2, 0.4),
    lossType,
    importanceSamplingLevel: rng.uniform(0, 1) < 0.5 ? "token" : "sequence",
    maxCompletionLength: T + 2,
    topEntropyQuantile: rng.uniform(0, 1) < 0.5 ? 1 : rng.uniform(0.1, 1),
    numItemsInBatch: rng.uniform(0, 1) < 0.5 ? undefined : 3 + Math.floor(rng.uniform(0, 20)),
  };
  if (lossType !== "cispo" && rng.uniform(0, 1) < 0.4) opts.delta = 1 + (opts.epsilonHigh ?? opts.epsilonLow) + rng.uniform(0.1, 2);
  const useOld = rng.uniform(0, 1) < 0.7;
  const isr = rng.uniform(0, 1) < 0.3 ? m(() => rng.uniform(0, 2)) : null;
  const c = { logp, old: useOld ? old : null, ref: m(() => -0.1 - 3 * rng.uniform(0, 1)), adv: Array.from({ length: B }, () => rng.uniform(-2, 2)), mask, entropy: m(() => rng.uniform(0, 4)), isr };
  const t = {
    oldLogp: c.old ? tf.tensor2d(c.old) : null,
    refLogp: tf.tensor2d(c.ref),
    mask: tf.tensor2d(mask),
    entropy: tf.tensor2d(c.entropy),
    importanceSamplingRatio: isr ? tf.tensor2d(isr) : null,
    advantages: c.adv,
  };
  const x = tf.tensor2d(logp);
  const lossT = grpoLoss({ ...t, logp: x }, opts);
  const g = tf.grad((y: tf.Tensor) => grpoLoss({ ...t, logp: y as tf.Tensor2D }, opts))(x);
  cases.push({ ...c, opts, loss: lossT.dataSync()[0], grad: g.arraySync() });
  tf.dispose([x, lossT, g, ...(Object.values(t).filter((v) => v instanceof tf.Tensor) as tf.Tensor[])]);
}
fs.writeFileSync(out, JSON.stringify(cases));
console.log(`wrote ${cases.length} cases to ${out}`);
