// One decode step's token selection on webgpu, B = 8 rows over V = 151936 (Qwen2-VL's vocabulary):
//   device: RarlSampleRows on the logits already on the GPU + read-back of B ids and log-probs (2·B floats);
//   host:   read-back of the [B, V] logits + @rarl/model's sampleRow per row (what generate() did before).
// Printed as ms per step (best of several runs) and the host / device ratio (same run, same logits). Not a test.
// Run from packages/core: `npx tsx bench/sampling-gpu.ts` (after `npm run build`: @rarl/model's built host sampler is
// the reference), or `samplingGpuTable` from `npm run bench:gpu` (which passes @rarl/model's sampler in).
import * as tf from "@tensorflow/tfjs-core";
import { getWebgpuInfo, initBackend, Rng, sampleRowsOnDevice } from "../src/index";
import { machineInfo, runIfMain } from "./machine";

const B = 8;
const V = 151936;

async function bestMs(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn(); // warm-up (shader compilation)
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return Math.min(...times);
}

/** The host sampler of @rarl/model (a runtime import by name: @rarl/core must not depend on @rarl/model). */
export interface HostSampler {
  resolveSamplingParams(p: object): { doSample: boolean; temperature: number; topK: number; topP: number; minP: number };
  sampleRow(raw: Float32Array, seen: number[], p: object, rng: { random(): number }, scratch: Float32Array): { token: number };
}

/**
 * Times one decode step's token selection on the running webgpu backend, device kernel vs read-back + host
 * `sampleRow`, for three sampling configs; prints a markdown table through `print`.
 */
export async function samplingGpuTable(host: HostSampler, opts: { reps?: number; print?: (line: string) => void } = {}): Promise<void> {
  const { resolveSamplingParams, sampleRow } = host;
  const print = opts.print ?? console.log;
  if (tf.getBackend() !== "webgpu") throw new Error(`samplingGpuTable: the backend is ${tf.getBackend()}, not webgpu`);
  const rng = new Rng(1);
  const logits = tf.tensor2d(Float32Array.from({ length: B * V }, () => rng.normal() * 3), [B, V]);
  const suppress = [151652, 151653, 151654, 151655, 151656];
  const mask = new Float32Array(V).fill(1);
  for (const t of suppress) mask[t] = 0;
  const allowed = tf.tensor1d(mask);
  const reps = opts.reps ?? 5;
  const configs = [
    { name: "temperature 0.7 + 5 suppressed ids (GRPO)", sp: { temperature: 0.7, suppressTokens: suppress }, masked: true },
    { name: "top-k 50 + top-p 0.9", sp: { topK: 50, topP: 0.9 }, masked: false },
    { name: "greedy", sp: { doSample: false }, masked: false },
  ];
  const scratch = new Float32Array(V);
  print(`- token selection of one decode step, B = ${B}, V = ${V}, best of ${reps} runs after a warm-up:`);
  print("");
  print("| config | device: kernel + read-back of B ids (ms) | host: read-back of [B, V] + sampleRow (ms) | host / device |");
  print("| --- | ---: | ---: | ---: |");
  try {
    for (const c of configs) {
      const p = resolveSamplingParams(c.sp);
      const rows = Array.from({ length: B }, (_, r) => new Rng(100 + r));
      const dev = await bestMs(async () => {
        const out = sampleRowsOnDevice(logits, rows.map((r) => r.random()), { greedy: !p.doSample, temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP }, c.masked ? allowed : undefined);
        await out.data();
        out.dispose();
      }, reps);
      const hostMs = await bestMs(async () => {
        const x = (await logits.data()) as Float32Array;
        for (let r = 0; r < B; r++) sampleRow(x.subarray(r * V, (r + 1) * V), [], p, rows[r], scratch);
      }, reps);
      print(`| ${c.name} | ${dev.toFixed(1)} | ${hostMs.toFixed(1)} | ${(hostMs / dev).toFixed(2)}x |`);
    }
  } finally {
    tf.dispose([logits, allowed]);
  }
  print("");
}

async function main(): Promise<void> {
  const modelPackage = "@rarl/model";
  const host = (await import(modelPackage)) as HostSampler;
  await initBackend({ prefer: ["webgpu"] });
  if (tf.getBackend() !== "webgpu") throw new Error(`webgpu did not start (backend ${tf.getBackend()})`);
  const info = getWebgpuInfo();
  const m = machineInfo();
  const a = info ? `${info.vendor} ${info.architecture} ${info.description} (${info.backendType}, ${info.featureLevel}${info.software ? ", software" : ""})` : "unknown";
  console.log(`machine: ${m.cpu}, ${m.cores} cores, node ${m.node}, load ${m.load}; adapter: ${a}`);
  await samplingGpuTable(host, { reps: Number(process.env.RARL_BENCH_REPS ?? 5) });
}

// Standalone only (not when bench:gpu imports this module).
runIfMain(import.meta.url, main);
