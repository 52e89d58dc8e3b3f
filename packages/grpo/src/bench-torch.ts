/**
 * `npm run bench:gpu`'s PyTorch reference (bench/torch_ref.py) and the issue-14 targets, as pure functions so they
 * are tested without a GPU or torch: the spec gpu.ts hands the script, the JSON the script prints (parsed and
 * checked), our figures as speed ratios to PyTorch's, and each target as met / not met.
 *
 * A speed ratio is > 1 when ours is faster: ours / PyTorch for a rate (tok/s, TFLOP/s), PyTorch / ours for a time.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { RarlError } from "@rarl/core";

/** The PyTorch reference's output could not be used: `details.field` names what was wrong. */
export class TorchReferenceError extends RarlError {}

/** One config the reference builds (transformers' Qwen2VLConfig(**config)) and the prompt it runs. */
export interface TorchRefConfig {
  /** "bench" or "2b": links a reference run to our figures (OurConfigFigures.key). */
  label: string;
  /** The config.json dict (snake_case, as Hugging Face writes it). */
  config: Record<string, unknown>;
  prompt: { inputIds: number[]; imageGridThw: number[][] };
}

export type TorchDtype = "float32" | "bfloat16";
export type TorchAttn = "eager" | "sdpa";

/** What gpu.ts writes for torch_ref.py (its docstring lists the same fields). */
export interface TorchRefSpec {
  configs: TorchRefConfig[];
  /** The runs in the order to run them (the time budget may skip the last ones). */
  runs: { config: string; dtype: TorchDtype; attn: TorchAttn }[];
  decodeGs: number[];
  decodeTokens: number;
  completionTokens: number;
  numGenerations: number;
  loraR: number;
  loraAlpha: number;
  beta: number;
  learningRate: number;
  matmulN: number;
  matmulReps: number;
  /** No run starts after this many seconds. */
  timeBudgetS: number;
  seed: number;
}

/** GRPO step phases, named as our trainer's timing (scoring is 0 in the bench: a random reward). */
export const GRPO_PHASES = ["generation", "logprobs", "backward", "optimizer"] as const;

/** One reference run: a config in one dtype and attention implementation. */
export interface TorchRefRun {
  config: string;
  dtype: TorchDtype;
  attn: TorchAttn;
  prefillTokS?: number;
  /** tok/s by G ("1", "8"); null when a run decoded one token only. */
  decodeTokS?: Record<string, number | null>;
  /** Teacher-forced log-probs of G completions, no grad (our step's "logprobs" phase does the same work). */
  logprobsS?: number;
  /** LoRA forward+backward of G completions (our step's "backward" phase). */
  loraFwdBwdS?: number;
  grpoStep?: { totalS: number; phases: Record<string, number> };
  peakMemBytes?: number;
  /** Why the run failed (an OOM, an API mismatch). */
  error?: string;
  /** Why the run was not started (the time budget). */
  skipped?: string;
}

/** torch_ref.py's output. */
export interface TorchRefResult {
  versions: { python: string; torch: string; transformers: string; peft: string };
  device: string;
  deviceName: string;
  cuda: boolean;
  matmul: { n: number; float32Tflops: number; tf32Tflops?: number };
  runs: TorchRefRun[];
  elapsedS: number;
}

const isNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x);

function bad(field: string, expected: string, got: unknown): never {
  throw new TorchReferenceError(`torch_ref.py output: ${field} should be ${expected}, got ${JSON.stringify(got)?.slice(0, 80)}`, {
    code: "TORCH_REF_BAD_OUTPUT",
    details: { field },
  });
}

/**
 * Parses torch_ref.py's stdout (the JSON object on its last non-empty line) and checks every field the comparison
 * reads. `{"error": ...}` (torch missing) is a TorchReferenceError with code TORCH_REF_UNAVAILABLE.
 */
export function parseTorchRefResult(stdout: string): TorchRefResult {
  const line = stdout.trim().split("\n").pop() ?? "";
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(line);
  } catch {
    throw new TorchReferenceError(`torch_ref.py printed no JSON object on its last line (got ${JSON.stringify(line.slice(0, 80))})`, { code: "TORCH_REF_BAD_OUTPUT", details: { field: "stdout" } });
  }
  if (typeof j !== "object" || j === null) bad("the output", "an object", j);
  if (typeof j.error === "string") throw new TorchReferenceError(`PyTorch reference not run: ${j.error}`, { code: "TORCH_REF_UNAVAILABLE", details: { field: "error" } });
  const v = j.versions as Record<string, unknown> | undefined;
  for (const k of ["python", "torch", "transformers", "peft"]) if (typeof v?.[k] !== "string") bad(`versions.${k}`, "a string", v?.[k]);
  if (typeof j.deviceName !== "string") bad("deviceName", "a string", j.deviceName);
  if (typeof j.device !== "string") bad("device", "a string", j.device);
  if (typeof j.cuda !== "boolean") bad("cuda", "a boolean", j.cuda);
  const m = j.matmul as Record<string, unknown> | undefined;
  if (!isNum(m?.n)) bad("matmul.n", "a number", m?.n);
  if (!isNum(m?.float32Tflops)) bad("matmul.float32Tflops", "a number", m?.float32Tflops);
  if (m?.tf32Tflops !== undefined && !isNum(m.tf32Tflops)) bad("matmul.tf32Tflops", "a number", m.tf32Tflops);
  if (!Array.isArray(j.runs)) bad("runs", "an array", j.runs);
  (j.runs as Record<string, unknown>[]).forEach((r, i) => {
    const f = (k: string) => `runs[${i}].${k}`;
    if (typeof r.config !== "string") bad(f("config"), "a string", r.config);
    if (r.dtype !== "float32" && r.dtype !== "bfloat16") bad(f("dtype"), '"float32" or "bfloat16"', r.dtype);
    if (r.attn !== "eager" && r.attn !== "sdpa") bad(f("attn"), '"eager" or "sdpa"', r.attn);
    if (r.error !== undefined || r.skipped !== undefined) return;
    for (const k of ["prefillTokS", "logprobsS", "loraFwdBwdS"]) if (!isNum(r[k])) bad(f(k), "a number", r[k]);
    const d = r.decodeTokS as Record<string, unknown> | undefined;
    if (typeof d !== "object" || d === null) bad(f("decodeTokS"), "an object", d);
    for (const [g, x] of Object.entries(d)) if (x !== null && !isNum(x)) bad(f(`decodeTokS.${g}`), "a number or null", x);
    const s = r.grpoStep as { totalS?: unknown; phases?: Record<string, unknown> } | undefined;
    if (!isNum(s?.totalS)) bad(f("grpoStep.totalS"), "a number", s?.totalS);
    for (const p of GRPO_PHASES) if (!isNum(s?.phases?.[p])) bad(f(`grpoStep.phases.${p}`), "a number", s?.phases?.[p]);
    if (r.peakMemBytes !== undefined && !isNum(r.peakMemBytes)) bad(f("peakMemBytes"), "a number", r.peakMemBytes);
  });
  if (!isNum(j.elapsedS)) bad("elapsedS", "a number", j.elapsedS);
  return j as unknown as TorchRefResult;
}

/** Whether `python -c "import torch, transformers, peft"` works; else the last line of why not. */
export function probeTorch(python: string[] = ["python3"]): { ok: true } | { ok: false; reason: string } {
  const r = spawnSync(python[0], [...python.slice(1), "-c", "import torch, transformers, peft"], { encoding: "utf8" });
  if (r.status === 0) return { ok: true };
  const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split("\n").pop() ?? "";
  return { ok: false, reason: `\`${python.join(" ")} -c "import torch, transformers, peft"\` fails here: ${why}` };
}

/**
 * Runs torch_ref.py on the spec (written to a temp file) and parses its output. Throws TorchReferenceError when the
 * script fails, times out or prints something unusable.
 */
export function runTorchReference(spec: TorchRefSpec, opts: { script: string; python?: string[]; timeoutS: number }): TorchRefResult {
  const python = opts.python ?? ["python3"];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-torch-ref-"));
  try {
    const file = path.join(dir, "spec.json");
    fs.writeFileSync(file, JSON.stringify(spec));
    const r = spawnSync(python[0], [...python.slice(1), opts.script, file], { encoding: "utf8", timeout: opts.timeoutS * 1000, maxBuffer: 64 * 2 ** 20, stdio: ["ignore", "pipe", "inherit"] });
    if (r.error || r.signal) {
      throw new TorchReferenceError(`torch_ref.py did not finish: ${r.error?.message ?? `killed by ${r.signal}`} (limit ${opts.timeoutS} s)`, { code: "TORCH_REF_FAILED", details: { field: "process" } });
    }
    if (r.status !== 0 && r.status !== 2) {
      throw new TorchReferenceError(`torch_ref.py exited with code ${r.status}: ${(r.stdout ?? "").trim().split("\n").pop()}`, { code: "TORCH_REF_FAILED", details: { field: "process" } });
    }
    return parseTorchRefResult(r.stdout ?? "");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Our figures for one config (gpu.ts). */
export interface OurConfigFigures {
  /** "bench" or "2b" (the reference run's config label). */
  key: string;
  label: string;
  prefillTokS: number;
  /** tok/s by G. */
  decodeTokS: Record<string, number>;
  grpoStepS: number;
  /** The step's phases in seconds (our trainer's timing). */
  phases: Record<string, number>;
}

/** Everything gpu.ts measured. */
export interface OurFigures {
  matmulTflops: number;
  configs: OurConfigFigures[];
  peakBytes: number;
}

/** Float32 (non-tensor-core, no TF32) peaks from NVIDIA's datasheets, TFLOP/s; matched against the GPU's name. */
export const FP32_PEAK_TFLOPS: readonly { name: string; pattern: RegExp; tflops: number }[] = [
  { name: "H100 PCIe", pattern: /H100.*PCIe/i, tflops: 51 },
  { name: "H100 SXM", pattern: /H100.*(SXM|HBM3)/i, tflops: 67 },
  { name: "H200 SXM", pattern: /H200(?!.*NVL)/i, tflops: 67 },
  { name: "A100", pattern: /A100/i, tflops: 19.5 },
];

/** The float32 peak of the GPU named `gpuName`, or null when it is not in FP32_PEAK_TFLOPS. */
export function fp32PeakTflops(gpuName: string): { name: string; tflops: number } | null {
  const hit = FP32_PEAK_TFLOPS.find((p) => p.pattern.test(gpuName));
  return hit ? { name: hit.name, tflops: hit.tflops } : null;
}

const fmt = (x: number, digits = 2) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(digits));
const combos: { dtype: TorchDtype; attn: TorchAttn }[] = [
  { dtype: "float32", attn: "eager" },
  { dtype: "float32", attn: "sdpa" },
  { dtype: "bfloat16", attn: "eager" },
  { dtype: "bfloat16", attn: "sdpa" },
];

/** The reference run of a config/dtype/attn, or null. */
export function findRun(ref: TorchRefResult, config: string, dtype: TorchDtype, attn: TorchAttn): TorchRefRun | null {
  return ref.runs.find((r) => r.config === config && r.dtype === dtype && r.attn === attn) ?? null;
}

/**
 * Markdown lines: the reference's machine line, the matmul ratio, then per config a table with one row per figure
 * (ours, then each PyTorch run's value with our speed ratio to it) and a line per run that failed or was skipped.
 */
export function compareWithTorch(ours: OurFigures, ref: TorchRefResult): string[] {
  const lines: string[] = [];
  lines.push(
    `- PyTorch reference: torch ${ref.versions.torch}, transformers ${ref.versions.transformers}, peft ${ref.versions.peft} (Python ${ref.versions.python}) on ${ref.deviceName} (${ref.cuda ? "CUDA" : "CPU"}), ${fmt(ref.elapsedS, 0)} s. Ratios are our speed / PyTorch's (> 1: ours faster).`,
  );
  const mm = ref.matmul;
  lines.push(
    `- raw float32 matmul: ours ${fmt(ours.matmulTflops, 3)} TFLOP/s; PyTorch ${mm.n}^3 ${fmt(mm.float32Tflops, 3)} TFLOP/s (TF32 off) = ${fmt(ours.matmulTflops / mm.float32Tflops)}x${mm.tf32Tflops !== undefined ? `; PyTorch with TF32 ${fmt(mm.tf32Tflops, 3)} TFLOP/s` : ""}`,
  );
  for (const c of ours.configs) {
    const runs = combos.map((k) => ({ ...k, run: findRun(ref, c.key, k.dtype, k.attn) }));
    const ok = runs.filter((r) => r.run && !r.run.error && !r.run.skipped) as { dtype: TorchDtype; attn: TorchAttn; run: TorchRefRun }[];
    lines.push("", `${c.label} vs PyTorch:`, "");
    lines.push(`| figure | ours | ${ok.map((r) => `PyTorch ${r.dtype} ${r.attn}`).join(" | ")} |`);
    lines.push(`|---|---:|${ok.map(() => "---:|").join("")}`);
    const row = (name: string, mine: number | undefined, unit: string, theirs: (r: TorchRefRun) => number | null | undefined, kind: "rate" | "time") => {
      const cells = ok.map(({ run }) => {
        const t = theirs(run);
        if (!isNum(t) || !isNum(mine)) return "-";
        const ratio = kind === "rate" ? mine / t : t / mine;
        return `${fmt(t)} (${fmt(ratio)}x)`;
      });
      lines.push(`| ${name} (${unit}) | ${isNum(mine) ? fmt(mine) : "-"} | ${cells.join(" | ")} |`);
    };
    row("prefill", c.prefillTokS, "tok/s", (r) => r.prefillTokS, "rate");
    for (const g of Object.keys(c.decodeTokS)) row(`decode G = ${g}`, c.decodeTokS[g], "tok/s", (r) => r.decodeTokS?.[g], "rate");
    row("teacher-forced log-probs, no grad", c.phases.logprobs, "s", (r) => r.logprobsS, "time");
    row("LoRA forward+backward", c.phases.backward, "s", (r) => r.loraFwdBwdS, "time");
    row("GRPO step", c.grpoStepS, "s", (r) => r.grpoStep?.totalS, "time");
    for (const p of GRPO_PHASES) row(`  step: ${p}`, c.phases[p], "s", (r) => r.grpoStep?.phases[p], "time");
    const mem = ok.filter((r) => r.run.peakMemBytes !== undefined).map((r) => `${r.dtype} ${r.attn} ${fmt(r.run.peakMemBytes! / 2 ** 20, 0)} MiB`);
    if (mem.length) lines.push("", `- PyTorch peak GPU memory (torch.cuda.max_memory_allocated) on ${c.key}: ${mem.join(", ")}; ours (tfjs, the whole bench): ${fmt(ours.peakBytes / 2 ** 20, 0)} MiB`);
    for (const r of runs) {
      if (!r.run) lines.push(`- PyTorch ${r.dtype} ${r.attn} on ${c.key}: not in the reference's output`);
      else if (r.run.skipped) lines.push(`- PyTorch ${r.dtype} ${r.attn} on ${c.key}: skipped (${r.run.skipped})`);
      else if (r.run.error) lines.push(`- PyTorch ${r.dtype} ${r.attn} on ${c.key}: failed (${r.run.error})`);
    }
  }
  return lines;
}

/** One issue-14 target and whether this run reached it. */
export interface TargetVerdict {
  target: string;
  status: "met" | "not met" | "not measured" | "peak unknown";
  detail: string;
}

/**
 * The issue's targets (they apply on an H100 or H200): the 2B GRPO step at most 2x PyTorch eager float32; decode
 * at G = 8 at least 4x the tok/s of G = 1 (on the 2B config, else the bench config, which the detail names);
 * matmul at least 25% of the GPU's float32 peak (`gpuName`: the reference's device name or the adapter's).
 * With `software` (a CPU-backed adapter) no verdict is "met" or "not met": each is "not measured", with the ratio
 * that was computed kept in the detail, since the targets are about a GPU.
 */
export function issueTargets(ours: OurFigures, ref: TorchRefResult | null, gpuName: string, refMissing = "the PyTorch reference did not run", software = false): TargetVerdict[] {
  const out: TargetVerdict[] = [];
  const step = "2B GRPO step <= 2x PyTorch eager float32";
  const mine2b = ours.configs.find((c) => c.key === "2b");
  const run = ref ? findRun(ref, "2b", "float32", "eager") : null;
  if (!mine2b) out.push({ target: step, status: "not measured", detail: "the 2B config was not run" });
  else if (!ref) out.push({ target: step, status: "not measured", detail: `ours ${fmt(mine2b.grpoStepS)} s; ${refMissing}` });
  else if (!run || run.error || run.skipped || !run.grpoStep) {
    out.push({ target: step, status: "not measured", detail: `ours ${fmt(mine2b.grpoStepS)} s; PyTorch float32 eager on 2B: ${run?.error ?? run?.skipped ?? "missing"}` });
  } else {
    const x = mine2b.grpoStepS / run.grpoStep.totalS;
    out.push({ target: step, status: x <= 2 ? "met" : "not met", detail: `ours ${fmt(mine2b.grpoStepS)} s / PyTorch ${fmt(run.grpoStep.totalS)} s = ${fmt(x)}x` });
  }
  const dec = "decode tok/s at G = 8 >= 4x G = 1";
  const c = mine2b ?? ours.configs.find((k) => k.key === "bench");
  const d1 = c?.decodeTokS["1"];
  const d8 = c?.decodeTokS["8"];
  if (!c || !isNum(d1) || !isNum(d8) || d1 <= 0) out.push({ target: dec, status: "not measured", detail: "no decode figures at G = 1 and G = 8" });
  else {
    const x = d8 / d1;
    out.push({ target: dec, status: x >= 4 ? "met" : "not met", detail: `${c.key === "2b" ? "2B config" : "bench config (2B not run)"}: ${fmt(d8)} / ${fmt(d1)} tok/s = ${fmt(x)}x` });
  }
  const mm = "matmul >= 25% of the GPU's float32 peak";
  const peak = fp32PeakTflops(gpuName);
  if (!peak) out.push({ target: mm, status: "peak unknown", detail: `ours ${fmt(ours.matmulTflops, 3)} TFLOP/s on "${gpuName}", not in the table (${FP32_PEAK_TFLOPS.map((p) => p.name).join(", ")})` });
  else {
    const x = ours.matmulTflops / peak.tflops;
    out.push({ target: mm, status: x >= 0.25 ? "met" : "not met", detail: `ours ${fmt(ours.matmulTflops, 3)} TFLOP/s = ${(100 * x).toFixed(1)}% of the ${peak.name}'s ${peak.tflops} TFLOP/s` });
  }
  if (!software) return out;
  return out.map((v) => (v.status === "met" || v.status === "not met" ? { ...v, status: "not measured", detail: `on a software adapter, not a GPU: ${v.detail}` } : v));
}

/** Markdown lines for the verdicts. */
export function formatTargets(verdicts: TargetVerdict[]): string[] {
  return ["- Targets (issue 14, on an H100 or H200):", ...verdicts.map((v) => `  - ${v.target}: ${v.status.toUpperCase()} (${v.detail})`)];
}
