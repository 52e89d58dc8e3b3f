// Child process for wasm-threads.test.ts: starts wasm with RARL_WASM_THREADS from the env, runs a few ops,
// prints one JSON line, and returns without calling process.exit (the test checks that the process ends by itself).
import * as tf from "@tensorflow/tfjs-core";
import { getWasmThreads, initBackend } from "../index";
import { Rng } from "../rng";

function randn(shape: number[], seed: number): tf.Tensor {
  const rng = new Rng(seed);
  return tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()), shape);
}

const backend = await initBackend({ prefer: [(process.env.CHILD_BACKEND as "wasm" | "cpu") ?? "wasm"] });
const out = tf.tidy(() => {
  const a = randn([64, 48], 1);
  const b = randn([80, 64], 2);
  const y = tf.matMul(a, b, true, true);
  const g = tf.grad((x: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, b, true, true))))(a);
  return { y: Array.from(y.dataSync()), g: Array.from(g.dataSync()) };
});
const wasm = (await import("@tensorflow/tfjs-backend-wasm")) as unknown as { getThreadsCount(): number };
console.log(JSON.stringify({ backend, threads: backend === "wasm" ? wasm.getThreadsCount() : 0, configured: getWasmThreads(), ...out }));
