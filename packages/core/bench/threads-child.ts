// Child of bench/run.ts: wasm matmul GFLOP/s with RARL_WASM_THREADS from the env (threads are fixed at start-up).
import * as tf from "@tensorflow/tfjs-core";
import { getWasmThreads, initBackend } from "../src/index";
import { gflops, timeMs } from "./timing";

await initBackend({ prefer: ["wasm"] });
const rows: { shape: string; gflops: number }[] = [];
for (const [m, k, n] of [
  [256, 1536, 1536],
  [512, 512, 512],
  [1024, 1024, 1024],
]) {
  const a = tf.randomNormal([m, k]);
  const b = tf.randomNormal([k, n]);
  const ms = timeMs(() => tf.tidy(() => {
        tf.matMul(a, b).dataSync(); // returning the TypedArray from tidy would make tidy walk it: slow
      }));
  rows.push({ shape: `${m}x${k} @ ${k}x${n}`, gflops: gflops(m, k, n, ms) });
  tf.dispose([a, b]);
}
console.log(JSON.stringify({ threads: getWasmThreads(), rows }));
