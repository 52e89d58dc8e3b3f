// Runnable: `npx tsx examples/quickstart.ts` from packages/core (the same code is in README.md).
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import { createProgress, getLogger, initBackend, openSafetensors, Rng, writeSafetensors } from "@rarl/core";

const log = getLogger("example");
const backend = await initBackend(); // tensorflow > webgpu > wasm > cpu, or RARL_BACKEND=wasm|cpu|...
const rng = new Rng(42);

// write two tensors (F32 and BF16) atomically, then read them back lazily, one tensor at a time
const file = path.join(os.tmpdir(), "rarl-quickstart.safetensors");
const w = Float32Array.from({ length: 8 * 4 }, () => rng.normal(0, 0.02));
writeSafetensors(file, { "layer.weight": { dtype: "BF16", shape: [8, 4], data: w }, "layer.bias": { dtype: "F32", shape: [8], data: new Float32Array(8) } }, { format: "pt" });
const st = openSafetensors(file);
log.info("checkpoint", { backend, tensors: st.keys(), weight: st.info("layer.weight") });

// a gradient step on the chosen backend (tfjs gradients are registered by @rarl/core)
const weight = tf.tensor(st.read("layer.weight").data as Float32Array, [8, 4]);
const x = tf.randomNormal([2, 4], 0, 1, "float32", 7);
const progress = createProgress({ total: 3, label: "steps" });
for (let i = 0; i < 3; i++) {
  const loss = tf.tidy(() => {
    const g = tf.grad((wt: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, wt, false, true))))(weight);
    return tf.sum(tf.abs(g)).dataSync()[0];
  });
  progress.update(i + 1, { gradL1: loss });
}
progress.stop();
tf.dispose([weight, x]);
console.log(`backend=${backend} tensors=${st.keys().join(",")} numTensors=${tf.memory().numTensors}`);
