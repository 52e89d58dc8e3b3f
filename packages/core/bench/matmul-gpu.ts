/**
 * Matmul on the webgpu backend for Qwen2-VL-2B's shapes: tfjs-backend-webgpu's own program vs @rarl/core's tuned
 * routes (the skinny kernel of matmul_skinny.ts, the vec4 layout rewrites of matmul_layout.ts) per shape class, with the raw N x N x N rate as the same-run reference.
 *
 *   tsx packages/core/bench/matmul-gpu.ts            (standalone; starts the webgpu backend; on a GPU, or with
 *                                                     RARL_BENCH_MATMUL_SWEEP=1, also sweeps the skinny work split)
 *   npm run bench:gpu                                 (packages/grpo/bench/gpu.ts calls matmulGpuTable)
 *
 * Each figure: warm-up (shader compilation) first, then the best of `samples` timings of `reps` back-to-back
 * products synchronised by reading the last output back, as GFLOP/s (2·M·N·K per product). "tfjs" runs with
 * RARL_WEBGPU_TUNED_MATMUL=0 (tfjs's own program choice, deterministic split-K fix kept), "tuned" without; a class
 * the tuned kernels do not take prints tfjs only. Shapes are the model's (hidden 1536, intermediate 8960, vocab
 * chunk 21845 rows = 128 MiB, vision 1280/5120, LoRA r = 8); with `scale` < 1 every dimension except m (the rows
 * in flight) is scaled down, for software adapters (see matmulTableDefaults).
 */
import * as tf from "@tensorflow/tfjs-core";
import { programsRun } from "../src/webgpu-kernels/matmul-testing";
import { runIfMain } from "./machine";

export interface MatmulShape {
  /** Shape class, e.g. "decode q/o proj W x xT". */
  label: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
}

export interface MatmulRow {
  label: string;
  /** "[M, K] x [K, N]" as run (after scaling). */
  dims: string;
  tfjsGflops: number;
  /** null when the tuned kernels do not take this shape. */
  tunedGflops: number | null;
  /** Max |y − exact| / (1 + |exact|) of tfjs's and the tuned output against a float64 product on the host (tuned shapes only), or null. */
  tfjsErr: number | null;
  tunedErr: number | null;
}

/** The model's matmul shape classes (unscaled). m: rows in flight for decode (G = 8 samples), T: prefill tokens. */
export function modelShapes(m = 8, T = 256): MatmulShape[] {
  const H = 1536;
  const I = 8960;
  const V = 21845; // rows of one 128 MiB vocabulary chunk of the [151936, 1536] lm_head
  return [
    { label: "decode q/o proj, W x xT (m = 1)", a: [H, H], b: [H, 1] },
    { label: `decode q/o proj, W x xT (m = ${m})`, a: [H, H], b: [H, m] },
    { label: "decode q/o proj, W x xT (m = 16)", a: [H, H], b: [H, 16] },
    { label: `decode k/v proj (256 x 1536), m = ${m}`, a: [256, H], b: [H, m] },
    { label: `decode gate/up proj, m = ${m}`, a: [I, H], b: [H, m] },
    { label: `decode down proj, m = ${m}`, a: [H, I], b: [I, m] },
    { label: `decode lm_head chunk, h x Wᵀ, m = ${m}`, a: [m, H], b: [V, H], transposeB: true },
    { label: `decode LoRA A (r = 8), m = ${m}`, a: [8, H], b: [H, m] },
    { label: `log-probs lm_head chunk over T = ${T}, h x Wᵀ`, a: [T, H], b: [V, H], transposeB: true },
    { label: `prefill q/o proj, T = ${T}`, a: [H, H], b: [H, T] },
    { label: `prefill q/o proj, T = ${T + 1} (not a multiple of 4)`, a: [H, H], b: [H, T + 1] },
    { label: `prefill gate/up proj, T = ${T}`, a: [I, H], b: [H, T] },
    { label: `prefill down proj, T = ${T}`, a: [H, I], b: [I, T] },
    { label: "vision fc1 (1280 -> 5120), 1024 patches", a: [5120, 1280], b: [1280, 1024] },
    { label: `backward dyᵀ x W (down proj), T = ${T}`, a: [T, H], b: [H, I] },
  ];
}

function scaleShape(s: MatmulShape, scale: number): MatmulShape {
  if (scale === 1) return s;
  // Scale every dim except the skinny ones (<= 16: m, r); keep multiples of 4 (the model's dims are; T + 1 stays odd).
  const f = (d: number) => (d <= 16 ? d : Math.max(32, Math.round((d * scale) / 4) * 4) + (d % 4));
  return { ...s, a: s.a.map(f), b: s.b.map(f) };
}

/** Max |y − exact| / (1 + |exact|) of each output against the float64 product of a, b (host loops; skinny shapes only). */
async function errorsVsFloat64(a: tf.Tensor, b: tf.Tensor, tA: boolean, tB: boolean, outs: Float32Array[]): Promise<number[]> {
  const a2 = tA ? tf.transpose(a) : a;
  const b2 = tB ? tf.transpose(b) : b;
  const [M, K] = a2.shape as [number, number];
  const N = b2.shape[1] as number;
  const A = (await a2.data()) as Float32Array;
  const B = (await b2.data()) as Float32Array;
  if (a2 !== a) a2.dispose();
  if (b2 !== b) b2.dispose();
  const ref = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const aik = A[i * K + k];
      for (let j = 0; j < N; j++) ref[i * N + j] += aik * B[k * N + j];
    }
  }
  return outs.map((y) => {
    let e = 0;
    for (let i = 0; i < y.length; i++) e = Math.max(e, Math.abs(y[i] - ref[i]) / (1 + Math.abs(ref[i])));
    return e;
  });
}

async function timeProducts(a: tf.Tensor, b: tf.Tensor, tA: boolean, tB: boolean, reps: number, samples: number): Promise<{ ms: number; y: Float32Array }> {
  const warm = tf.matMul(a, b, tA, tB);
  const y = (await warm.data()) as Float32Array;
  warm.dispose();
  let best = Number.POSITIVE_INFINITY;
  for (let s = 0; s < samples; s++) {
    const t0 = performance.now();
    const ys: tf.Tensor[] = [];
    for (let i = 0; i < reps; i++) ys.push(tf.matMul(a, b, tA, tB));
    await ys[ys.length - 1].data();
    best = Math.min(best, (performance.now() - t0) / reps);
    tf.dispose(ys);
  }
  return { ms: best, y };
}

function withTuned<T>(on: boolean, f: () => Promise<T>): Promise<T> {
  const before = process.env.RARL_WEBGPU_TUNED_MATMUL;
  if (on) delete process.env.RARL_WEBGPU_TUNED_MATMUL;
  else process.env.RARL_WEBGPU_TUNED_MATMUL = "0";
  return f().finally(() => {
    if (before === undefined) delete process.env.RARL_WEBGPU_TUNED_MATMUL;
    else process.env.RARL_WEBGPU_TUNED_MATMUL = before;
  });
}

/** Shader keys of the programs one product runs (the kernel tests' spy on runWebGPUProgram). */
async function programKeys(a: tf.Tensor, b: tf.Tensor, tA: boolean, tB: boolean): Promise<string> {
  const keys = await programsRun(async () => {
    const y = tf.matMul(a, b, tA, tB);
    await y.data();
    y.dispose();
  });
  return keys.join(";");
}

export interface MatmulTableOptions {
  /** Dimension scale (1 = the model's sizes). */
  scale?: number;
  /** Products per timing and timings per figure (best kept). */
  reps?: number;
  samples?: number;
  /** Raw-rate N (N x N x N). */
  rawN?: number;
  /** Decode rows in flight and prefill tokens. */
  m?: number;
  T?: number;
  /** Line printer (default console.log). */
  print?: (line: string) => void;
}

/**
 * Measures every shape class on the active backend (webgpu) and prints a markdown table: tfjs GFLOP/s, tuned
 * GFLOP/s, tuned / tfjs, and each as a fraction of the raw N³ rate. Returns the rows and the raw rate.
 */
export async function matmulGpuTable(opts: MatmulTableOptions = {}): Promise<{ rawGflops: number; rows: MatmulRow[] }> {
  const { scale = 1, reps = 5, samples = 3, rawN = 1024, m = 8, T = 256, print = console.log } = opts;
  if (tf.getBackend() !== "webgpu") throw new Error(`matmulGpuTable: the active tfjs backend is "${tf.getBackend()}", not webgpu`);
  const rand = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, "float32", seed);
  const ra = rand([rawN, rawN], 1);
  const rb = rand([rawN, rawN], 2);
  const raw = await withTuned(false, () => timeProducts(ra, rb, false, false, reps, samples));
  tf.dispose([ra, rb]);
  const rawGflops = (2 * rawN ** 3) / (raw.ms * 1e6);
  print(`- raw float32 matmul ${rawN}x${rawN}x${rawN} (tfjs): ${rawGflops.toFixed(2)} GFLOP/s`);
  print(`- matmul per shape class${scale !== 1 ? ` (every dim but m scaled by ${scale}: software adapter)` : ""}; best of ${samples} x ${reps} products, read-back synchronised:`);
  print("");
  print("| shape class | product | tfjs GFLOP/s | tuned GFLOP/s | tuned / tfjs | best / raw | max rel. error tfjs / tuned (vs float64) |");
  print("|---|---|---|---|---|---|---|");
  const rows: MatmulRow[] = [];
  for (const s0 of modelShapes(m, T)) {
    const s = scaleShape(s0, scale);
    const tA = s.transposeA ?? false;
    const tB = s.transposeB ?? false;
    const a = rand(s.a, 3);
    const b = rand(s.b, 4);
    const M = tA ? s.a[s.a.length - 1] : s.a[s.a.length - 2];
    const K = tA ? s.a[s.a.length - 2] : s.a[s.a.length - 1];
    const N = tB ? s.b[s.b.length - 2] : s.b[s.b.length - 1];
    const flop = 2 * M * N * K;
    try {
      const base = await withTuned(false, () => timeProducts(a, b, tA, tB, reps, samples));
      // The tuned route takes the product when it runs other programs than tfjs's own choice.
      const takes = (await withTuned(true, () => programKeys(a, b, tA, tB))) !== (await withTuned(false, () => programKeys(a, b, tA, tB)));
      const tuned = takes ? await withTuned(true, () => timeProducts(a, b, tA, tB, reps, samples)) : null;
      const errs = tuned && s.a.length === 2 && s.b.length === 2 && flop / 2 <= 5e8 ? await errorsVsFloat64(a, b, tA, tB, [base.y, tuned.y]) : null;
      const row: MatmulRow = {
        label: s.label,
        dims: `[${M}, ${K}]${tA ? "(ᵀ)" : ""} x [${K}, ${N}]${tB ? "(Wᵀ)" : ""}`,
        tfjsGflops: flop / (base.ms * 1e6),
        tunedGflops: tuned ? flop / (tuned.ms * 1e6) : null,
        tfjsErr: errs?.[0] ?? null,
        tunedErr: errs?.[1] ?? null,
      };
      rows.push(row);
      const t = row.tunedGflops;
      print(
        `| ${row.label} | ${row.dims} | ${row.tfjsGflops.toFixed(2)} | ${t === null ? "— (tfjs)" : t.toFixed(2)} | ${t === null ? "—" : `${(t / row.tfjsGflops).toFixed(2)}x`} | ${(Math.max(t ?? 0, row.tfjsGflops) / rawGflops).toFixed(2)} | ${row.tfjsErr === null ? "—" : `${row.tfjsErr.toExponential(1)} / ${row.tunedErr?.toExponential(1)}`} |`,
      );
    } finally {
      tf.dispose([a, b]);
    }
  }
  const bad = rows.filter((r) => (r.tunedErr ?? 0) > 1e-3);
  if (bad.length > 0) print(`- WARNING: the tuned output is more than 1e-3 off the float64 product on: ${bad.map((r) => r.label).join("; ")}`);
  return { rawGflops, rows };
}

/**
 * Tuning aid for a GPU: the skinny kernel's GFLOP/s on the decode shapes for each work split (threads per workgroup
 * x weight rows per workgroup), set through `setConfig` (matmul_skinny.ts's setSkinnyMatmulConfig), and the best one.
 */
export async function skinnySweep(setConfig: (c?: { workgroupSize: number; rows: number }) => void, opts: MatmulTableOptions = {}): Promise<void> {
  const { scale = 1, reps = 5, samples = 3, m = 8, print = console.log } = opts;
  const splits = [32, 64, 128, 256].flatMap((workgroupSize) => [1, 2, 4].map((rows) => ({ workgroupSize, rows })));
  print(`- skinny kernel work splits (threads x rows: GFLOP/s), best of ${samples} x ${reps}:`);
  try {
    for (const s0 of modelShapes(m).filter((x) => x.label.startsWith("decode") && !x.label.includes("LoRA"))) {
      const s = scaleShape(s0, scale);
      const a = tf.randomUniform(s.a, -1, 1, "float32", 5);
      const b = tf.randomUniform(s.b, -1, 1, "float32", 6);
      const tB = s.transposeB ?? false;
      const flop = 2 * s.a[0] * s.a[1] * (tB ? s.b[0] : s.b[1]);
      const rates: string[] = [];
      let best = { rate: 0, split: "" };
      for (const c of splits) {
        setConfig(c);
        const t = await timeProducts(a, b, false, tB, reps, samples);
        const rate = flop / (t.ms * 1e6);
        rates.push(`${c.workgroupSize}x${c.rows}: ${rate.toFixed(1)}`);
        if (rate > best.rate) best = { rate, split: `${c.workgroupSize}x${c.rows}` };
      }
      tf.dispose([a, b]);
      print(`  - ${s.label}: best ${best.split} (${rates.join(", ")})`);
    }
  } finally {
    setConfig();
  }
}

/**
 * Sizes for an adapter: a GPU gets the model's shapes (best of 5 x 20, raw N = 4096); a software adapter (llvmpipe
 * on CPU cores, ~1-10 GFLOP/s) half of every dim but m (best of 2 x 2, raw N = 1024), about 30 s.
 * RARL_BENCH_MATMUL_SCALE overrides the scale (1 on a software adapter: about 2 minutes on 2 shared cores).
 */
export function matmulTableDefaults(software: boolean): MatmulTableOptions {
  const env = Number(process.env.RARL_BENCH_MATMUL_SCALE);
  const scaleOverride = Number.isFinite(env) && env > 0 && env <= 1 ? env : null;
  return software ? { scale: scaleOverride ?? 0.5, reps: 2, samples: 2, rawN: 1024 } : { scale: scaleOverride ?? 1, reps: 20, samples: 5, rawN: 4096 };
}

async function main(): Promise<void> {
  process.env.RARL_BACKEND = "webgpu";
  const { initBackend } = await import("../src/backend");
  const { getWebgpuInfo } = await import("../src/webgpu");
  await initBackend();
  const info = getWebgpuInfo();
  const software = info?.software ?? true;
  console.log(`# webgpu matmul: ${info?.description || info?.device || "?"} (${info?.backendType ?? "?"}${software ? ", software adapter" : ""})`);
  const t0 = performance.now();
  const opts = matmulTableDefaults(software);
  await matmulGpuTable(opts);
  if (!software || process.env.RARL_BENCH_MATMUL_SWEEP === "1") {
    const { setSkinnyMatmulConfig } = await import("../src/webgpu-kernels/matmul_skinny");
    await skinnySweep(setSkinnyMatmulConfig, opts);
  }
  console.log(`- took ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

// Standalone only (not when bench:gpu imports this module).
runIfMain(import.meta.url, main);
