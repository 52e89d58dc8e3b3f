/**
 * Fused attention vs the tfjs composite on the webgpu backend (whatever adapter this machine has; here mesa's
 * software adapter), on Qwen2-VL-2B attention shapes (12 query heads over 2 kv heads, head dim 128), one layer:
 *  - prefill: B = 1, S = T = 128 new tokens, causal mask with 16 positions of left padding;
 *  - decode: B = 8 rows, S = 1 query over a T = 300 KV cache, rows left-padded by 0..70;
 *  - shared-prefix decode: 8 rows (2 prompts x 4 samples) over 290 shared prompt keys + 10 own keys each.
 * Each rep runs the op and reads the [B, S, 1536] result back; fused and composite reps alternate (so machine
 * load hits both alike) after one warm-up each (shader compilation). Prints the median per-call time of each, their
 * ratio (composite / fused: > 1 means the fused kernel is faster) and the max |fused − composite|.
 * Run: `npx tsx packages/core/bench/attention-gpu.ts [reps]` (default 5), or `attentionGpuTable` from `npm run bench:gpu`.
 * Not a test: nothing is asserted.
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/backend";
import { getWebgpuInfo } from "../src/webgpu";
import { type AttentionPrefix, attentionComposite, fusedAttention } from "../src/webgpu-kernels/attention";
import { runIfMain } from "./machine";

const MASK_MIN = -3.4028234663852886e38;
const NH = 12;
const KVH = 2;
const D = 128;

interface Problem {
  name: string;
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  mask: tf.Tensor4D;
  prefix?: AttentionPrefix;
}

/** Causal + left-padding mask [B, 1, S, T] for S new queries after `past` keys. */
function mask(B: number, S: number, past: number, pad: (b: number) => number): tf.Tensor4D {
  const T = past + S;
  const m = new Float32Array(B * S * T);
  for (let b = 0; b < B; b++) for (let i = 0; i < S; i++) for (let j = 0; j < T; j++) m[(b * S + i) * T + j] = j > past + i || j < pad(b) ? MASK_MIN : 0;
  return tf.tensor4d(m, [B, 1, S, T]);
}

function problem(name: string, B: number, S: number, past: number, pad: (b: number) => number, prefix?: { P: number; Tp: number }): Problem {
  const T = past + S;
  const Ts = T - (prefix?.Tp ?? 0);
  const s = 1 / Math.sqrt(Math.sqrt(D));
  const p: Problem = {
    name,
    q: tf.randomNormal([B, NH, S, D], 0, s, "float32", 1),
    k: tf.randomNormal([B, KVH, Ts, D], 0, s, "float32", 2),
    v: tf.randomNormal([B, KVH, Ts, D], 0, 1, "float32", 3),
    mask: mask(B, S, past, pad),
  };
  if (prefix) {
    p.prefix = {
      k: tf.randomNormal([prefix.P, KVH, prefix.Tp, D], 0, s, "float32", 4),
      v: tf.randomNormal([prefix.P, KVH, prefix.Tp, D], 0, 1, "float32", 5),
      rowPrompt: tf.tensor1d(
        Array.from({ length: B }, (_, b) => Math.floor((b * prefix.P) / B)),
        "int32",
      ),
    };
  }
  return p;
}

async function timeOnce(op: typeof fusedAttention, p: Problem): Promise<{ ms: number; y: Float32Array }> {
  const t0 = performance.now();
  const y = op(p.q, p.k, p.v, p.mask, p.prefix);
  const data = (await y.data()) as Float32Array;
  const ms = performance.now() - t0;
  y.dispose();
  return { ms, y: data };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Times fused attention against the composite on the running webgpu backend and prints a markdown table through
 * `print` (one row per problem: median ms of each, composite / fused, max |fused − composite|).
 */
export async function attentionGpuTable(opts: { reps?: number; print?: (line: string) => void } = {}): Promise<void> {
  const reps = opts.reps ?? 5;
  const print = opts.print ?? console.log;
  if (tf.getBackend() !== "webgpu") throw new Error(`attentionGpuTable: the backend is ${tf.getBackend()}, not webgpu`);
  print(`- fused attention (RarlAttention) vs the tfjs composite, one layer, ${NH} heads / ${KVH} kv heads, D ${D}; median of ${reps} alternating reps, each with a read-back:`);
  print("");
  print("| problem | fused (ms) | composite (ms) | composite / fused | max abs diff |");
  print("| --- | ---: | ---: | ---: | ---: |");
  const problems = [
    problem("prefill B=1 S=T=128", 1, 128, 0, () => 16),
    problem("decode B=8 S=1 T=300", 8, 1, 299, (b) => 10 * b),
    problem("shared-prefix decode B=8 (2 prompts x 4) Tp=290 + 10", 8, 1, 299, (b) => (b < 4 ? 0 : 30), { P: 2, Tp: 290 }),
  ];
  for (const p of problems) {
    const fused = await timeOnce(fusedAttention, p);
    const comp = await timeOnce(attentionComposite, p);
    let diff = 0;
    for (let i = 0; i < fused.y.length; i++) diff = Math.max(diff, Math.abs(fused.y[i] - comp.y[i]));
    const tf_: number[] = [];
    const tc: number[] = [];
    for (let r = 0; r < reps; r++) {
      tf_.push((await timeOnce(fusedAttention, p)).ms);
      tc.push((await timeOnce(attentionComposite, p)).ms);
    }
    const mf = median(tf_);
    const mc = median(tc);
    print(`| ${p.name} | ${mf.toFixed(1)} | ${mc.toFixed(1)} | ${(mc / mf).toFixed(2)}x | ${diff.toExponential(2)} |`);
    tf.dispose([p.q, p.k, p.v, p.mask, ...(p.prefix ? [p.prefix.k, p.prefix.v, p.prefix.rowPrompt] : [])]);
  }
  print("");
}

async function main(): Promise<void> {
  const reps = Number(process.argv[2] ?? 5);
  delete process.env.RARL_BACKEND;
  await initBackend({ prefer: ["webgpu"] });
  if (tf.getBackend() !== "webgpu") throw new Error(`webgpu did not start (backend ${tf.getBackend()})`);
  const info = getWebgpuInfo();
  console.log(`adapter: ${info ? `${info.vendor} ${info.architecture} (${info.description}; ${info.backendType}, ${info.featureLevel}${info.software ? ", software" : ""})` : "unknown"}`);
  await attentionGpuTable({ reps });
}

// Standalone only (not when bench:gpu imports this module).
runIfMain(import.meta.url, main);
