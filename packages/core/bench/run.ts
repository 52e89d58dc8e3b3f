// @rarl/core benchmark: raw matmul GFLOP/s (wasm vs cpu), transposed matmul and a linear layer's backward pass on
// wasm before/after the BatchMatMul fix, and 1 vs 2 wasm threads. Writes bench/RESULTS.md. Run: `npm run bench`.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend, setWasmTransposeFix, writeFileAtomic } from "../src/index";
import { machineInfo } from "./machine";
import { gflops, timeMs } from "./timing";

const here = path.dirname(fileURLToPath(import.meta.url));
const t0 = Date.now();
const loadStart = machineInfo().load;
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

function matmulGflops(m: number, k: number, n: number, tA = false, tB = false): number {
  const a = tf.randomNormal(tA ? [k, m] : [m, k]);
  const b = tf.randomNormal(tB ? [n, k] : [k, n]);
  const ms = timeMs(() => tf.tidy(() => {
        tf.matMul(a, b, tA, tB).dataSync(); // returning the TypedArray from tidy would make tidy walk it: slow
      }), { minMs: 300, minReps: 2 });
  tf.dispose([a, b]);
  return gflops(m, k, n, ms);
}

/** Forward + backward of y = x W (x [T, d], W [d, d]): ms per step. The MatMul gradient uses transposed matmuls. */
function linearStepMs(T: number, d: number): number {
  const x = tf.randomNormal([T, d]);
  const w = tf.randomNormal([d, d], 0, 0.02);
  const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.square(tf.matMul(xx, ww))));
  const ms = timeMs(
    () =>
      tf.tidy(() => {
        const [gx, gw] = g([x, w]);
        gx.dataSync();
        gw.dataSync();
      }),
    { minMs: 300, minReps: 2 },
  );
  tf.dispose([x, w]);
  return ms;
}

// 1. raw matmul, wasm (1 thread) vs cpu
const rawShapes: [number, number, number][] = [
  [128, 128, 128],
  [256, 256, 256],
  [512, 512, 512],
  [1024, 1024, 1024],
  [256, 1536, 1536],
];
const raw: { shape: string; wasm: number; cpu: number | null }[] = [];
await initBackend({ prefer: ["wasm"], wasmThreads: 1 });
for (const [m, k, n] of rawShapes) raw.push({ shape: `${m}x${k} @ ${k}x${n}`, wasm: matmulGflops(m, k, n), cpu: null });
await initBackend({ prefer: ["cpu"] });
for (const [i, [m, k, n]] of rawShapes.entries()) if (m * k * n <= 512 ** 3) raw[i].cpu = matmulGflops(m, k, n);

// 2. transposed matmul on wasm, fix off vs on
await initBackend({ prefer: ["wasm"] });
const trans: { shape: string; flags: string; before: number; after: number }[] = [];
for (const [m, k, n] of [
  [512, 512, 512],
  [256, 1536, 1536],
] as [number, number, number][]) {
  for (const [tA, tB] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ] as [boolean, boolean][]) {
    setWasmTransposeFix(false);
    const before = matmulGflops(m, k, n, tA, tB);
    setWasmTransposeFix(true);
    const after = matmulGflops(m, k, n, tA, tB);
    trans.push({ shape: `${m}x${k} @ ${k}x${n}`, flags: `${tA ? "A^T" : "A"} ${tB ? "B^T" : "B"}`, before, after });
  }
}
const backward: { shape: string; before: number; after: number }[] = [];
for (const [T, d] of [
  [256, 512],
  [256, 1536],
]) {
  setWasmTransposeFix(false);
  const before = linearStepMs(T, d);
  setWasmTransposeFix(true);
  const after = linearStepMs(T, d);
  backward.push({ shape: `x ${T}x${d}, W ${d}x${d}`, before, after });
}

// 3. wasm threads: separate processes (the thread count is fixed when the wasm backend starts)
const threads: { threads: number; rows: { shape: string; gflops: number }[] }[] = [];
for (const n of [1, 2]) {
  const r = spawnSync(process.execPath, ["--import", "tsx", path.join(here, "threads-child.ts")], {
    cwd: path.join(here, ".."),
    env: { ...process.env, RARL_BACKEND: "", RARL_WASM_THREADS: String(n), RARL_LOG_LEVEL: "warn" },
    encoding: "utf8",
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`threads child (${n}) failed: ${r.stderr}`);
  threads.push(JSON.parse(r.stdout.trim().split("\n").at(-1)!));
}

const m = machineInfo();
const md = `# @rarl/core benchmarks

- Machine: ${m.cpu}, ${m.cores} logical cores, ${m.ramGiB} GiB RAM; load average (1/5/15 min) at start ${loadStart}, at end ${m.load}: the machine is shared by several jobs, so these numbers move with the load
- Node ${m.node}, @tensorflow/tfjs-core ${tf.version_core}; date ${new Date().toISOString()}
- Command: \`cd packages/core && npm run bench\` (tsx bench/run.ts), ${((Date.now() - t0) / 1000).toFixed(0)} s
- Method: best (minimum) wall time of repeated calls (after 1 warm-up; at least 2-3 runs and 0.3-0.4 s) including \`dataSync()\`; inputs N(0,1) float32. The minimum, because the other jobs on this shared machine only ever add time.

## Raw matmul, GFLOP/s (wasm: 1 thread, XNNPACK)

| shape | wasm | cpu |
| --- | ---: | ---: |
${raw.map((r) => `| ${r.shape} | ${f1(r.wasm)} | ${r.cpu === null ? "(skipped: too slow)" : f2(r.cpu)} |`).join("\n")}

## wasm matmul with transpose flags, GFLOP/s, before / after the BatchMatMul fix

| shape | operands | before | after | speed-up |
| --- | --- | ---: | ---: | ---: |
${trans.map((r) => `| ${r.shape} | ${r.flags} | ${f1(r.before)} | ${f1(r.after)} | ${f1(r.after / r.before)}x |`).join("\n")}

## wasm linear layer forward + backward (y = xW, grads for x and W), ms per step, before / after the fix

| shape | before | after | speed-up |
| --- | ---: | ---: | ---: |
${backward.map((r) => `| ${r.shape} | ${f1(r.before)} | ${f1(r.after)} | ${f1(r.before / r.after)}x |`).join("\n")}

## wasm threads (RARL_WASM_THREADS), matmul GFLOP/s

| shape | ${threads.map((t) => `${t.threads} thread${t.threads > 1 ? "s" : ""}`).join(" | ")} | 2 vs 1 |
| --- | ${threads.map(() => "---:").join(" | ")} | ---: |
${threads[0].rows.map((r, i) => `| ${r.shape} | ${threads.map((t) => f1(t.rows[i].gflops)).join(" | ")} | ${f2(threads[1].rows[i].gflops / r.gflops)}x |`).join("\n")}

Threads are opt-in: with another process busy on one of the 2 cores, 2 threads can be slower than 1 (docs/engineering-notes.md).
`;
writeFileAtomic(path.join(here, "RESULTS.md"), md);
console.log(md);
