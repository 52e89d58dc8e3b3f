/**
 * `npm run bench:gpu`: the webgpu backend (Dawn through the optional `webgpu` package) on whatever adapter this
 * machine has. Prints and writes to bench/RESULTS-gpu.md (collected into BENCHMARKS.md by tools/bench.mjs):
 *  - raw float32 matmul rate on the adapter (N x N x N, the same-run reference every other figure is compared to);
 *  - prefill tok/s and decode tok/s at G = 1 and G = 8 on the bench config (random weights, ~107M parameters, the
 *    full 151936-token vocabulary: its embedding is held in vocabulary chunks where it exceeds one storage binding);
 *  - one GRPO step (LoRA r = 8 on q/k/v/o, G = 8) with its phases: on the bench config one 256-token prompt with a
 *    224x224 image; on the 2B config, as issue 14 asks, 256 text tokens with a 448x448 image (256 image tokens);
 *  - the peak GPU memory tfjs allocated.
 * Sizes: on a software adapter (llvmpipe) decode and completion lengths are cut to 8 tokens and the matmul to
 * N = 1024 (the full sizes would take hours on 2 CPU cores); on a hardware adapter: 128 tokens and N = 4096.
 * The Qwen2-VL-2B config runs only on a hardware adapter (or with RARL_BENCH_2B=1); otherwise it is skipped, and
 * the line says why. The PyTorch reference (bench/torch_ref.py: transformers + PEFT, same configs, same prompt,
 * float32/bf16 x eager/sdpa, on CUDA where available) runs where `python3 -c "import torch, transformers, peft"`
 * works, within RARL_TORCH_BUDGET_S seconds (default 240; runs not started by then are listed as skipped); every
 * figure is then printed as a ratio to PyTorch's (src/bench-torch.ts), followed by the issue's targets, met or not.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { getWebgpuInfo, initBackend, Rng, writeFileAtomic } from "@rarl/core";
import { buildQwen2VLFromSource, generate, parseQwen2VLConfig, QWEN2_VL_2B_INSTRUCT_CONFIG, type Qwen2VLConfig, type ResolvedSamplingParams, resolveSamplingParams, sampleRow } from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { attentionGpuTable } from "../../core/bench/attention-gpu";
import { machineInfo } from "../../core/bench/machine";
import { matmulGpuTable, matmulTableDefaults } from "../../core/bench/matmul-gpu";
import { samplingGpuTable } from "../../core/bench/sampling-gpu";
import { benchConfigJson, benchImagePrompt, randomSource } from "../../model/bench/random_checkpoint";
import { compareWithTorch, formatTargets, issueTargets, type OurConfigFigures, type OurFigures, probeTorch, runTorchReference, type TorchRefSpec } from "../src/bench-torch";
import { GRPO_DEFAULTS } from "../src/config";
import { GRPOTrainer } from "../src/grpo-trainer";
import { readMetrics } from "../src/metrics";
import { QwenPolicy } from "../src/qwen-policy";

const here = path.dirname(fileURLToPath(import.meta.url));
const lines: string[] = [];
const out = (s: string) => {
  lines.push(s);
  console.log(s);
};

let peakBytes = 0;
function samplePeak(): void {
  const m = tf.memory() as { numBytesAllocatedInGPU?: number; numBytesInGPU?: number };
  peakBytes = Math.max(peakBytes, m.numBytesAllocatedInGPU ?? m.numBytesInGPU ?? 0);
}

/** The prompt of each config: bench, a 224x224 image in 256 tokens; 2B, 256 text tokens and a 448x448 image. */
function promptFor(key: string, cfg: Qwen2VLConfig) {
  return benchImagePrompt(cfg, new Rng(3), key === "2b" ? { side: 448, length: 512 } : {});
}

async function modelFigures(key: string, label: string, cfg: Qwen2VLConfig, decodeTokens: number, completionTokens: number): Promise<OurConfigFigures> {
  const t0 = performance.now();
  const model = buildQwen2VLFromSource(cfg, randomSource(cfg, 7));
  samplePeak();
  const chunks = model.model.weights.embedChunks?.chunks.length ?? 0;
  out(`- ${label}: built in ${((performance.now() - t0) / 1000).toFixed(1)} s; embedding ${chunks > 0 ? `in ${chunks} vocabulary chunks` : "one tensor"}`);
  const prompt = promptFor(key, cfg);
  try {
    // Prefill: the 256-token prompt with its image (vision tower included), logits of the last position only.
    const prefill = async () => {
      const ids = tf.tensor2d([prompt.inputIds], [1, prompt.inputIds.length], "int32");
      const pv = tf.tensor2d(prompt.pixelValues, [prompt.pixelValues.length / 1176, 1176]);
      const t = performance.now();
      const o = model.forward({ inputIds: ids, pixelValues: pv, imageGridThw: prompt.imageGridThw, useCache: true, logitsToKeep: 1 });
      await o.logits.data();
      const s = (performance.now() - t) / 1000;
      samplePeak();
      o.logits.dispose();
      o.pastKeyValues?.dispose();
      tf.dispose([ids, pv]);
      return s;
    };
    await prefill(); // warm-up (shader compilation)
    const ps = await prefill();
    out(`  - prefill (${prompt.inputIds.length} tokens, 1 image of ${prompt.imageGridThw[0][1] * 14}x${prompt.imageGridThw[0][2] * 14}): ${ps.toFixed(2)} s = ${(prompt.inputIds.length / ps).toFixed(1)} tok/s`);
    const decodeRates: number[] = [];
    const figures: OurConfigFigures = { key, label, prefillTokS: prompt.inputIds.length / ps, decodeTokS: {}, grpoStepS: Number.NaN, phases: {} };
    for (const G of [1, 8]) {
      const r = await generate(model, null, { prompts: [prompt], numSamples: G, maxNewTokens: decodeTokens, doSample: true, temperature: 1, eosTokenIds: [], seed: 1 });
      samplePeak();
      const tokS = r.stats.decodedRows / (r.stats.decodeMs / 1000);
      decodeRates.push(tokS);
      figures.decodeTokS[String(G)] = tokS;
      out(`  - decode G = ${G}: ${r.stats.decodeSteps} steps, ${r.stats.decodedRows} tokens in ${(r.stats.decodeMs / 1000).toFixed(2)} s = ${tokS.toFixed(1)} tok/s (prefill in generate ${(r.stats.prefillMs / 1000).toFixed(2)} s)`);
    }
    out(`  - decode G = 8 / G = 1 tok/s: ${(decodeRates[1] / decodeRates[0]).toFixed(2)}x (target on an H100/H200: >= 4x)`);
    // One GRPO step: LoRA r = 8 on q/k/v/o, G = 8, the prompt above, a random-direction reward.
    const policy = new QwenPolicy(model, null, { r: 8, alpha: 16 });
    const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-gpu-grpo-"));
    try {
      const rewardRng = new Rng(9);
      const trainer = new GRPOTrainer({
        config: { ...GRPO_DEFAULTS, maxSteps: 1, numGenerations: 8, maxCompletionLength: completionTokens, saveSteps: 1000, progress: false, gradientCheckpointing: false },
        policy,
        examples: [{ id: "p" }],
        buildPrompt: () => ({ inputIds: prompt.inputIds, pixelValues: prompt.pixelValues, imageGridThw: prompt.imageGridThw }),
        rewards: (items: unknown[]) => ({ random: items.map(() => rewardRng.normal()) }),
        runDir,
      });
      const t = performance.now();
      await trainer.train({ handleSigint: false });
      samplePeak();
      const s = (performance.now() - t) / 1000;
      const m = readMetrics(runDir)[0] as { timing?: Record<string, number> };
      const phases = Object.entries(m.timing ?? {})
        .map(([k, v]) => `${k} ${v.toFixed(2)} s`)
        .join(", ");
      out(`  - GRPO step (G = 8, ${completionTokens}-token completions, LoRA r = 8): ${s.toFixed(1)} s (${phases})`);
      figures.grpoStepS = s;
      figures.phases = Object.fromEntries(Object.entries(m.timing ?? {}).map(([k, v]) => [k, Number(v)]));
      return figures;
    } finally {
      policy.dispose();
      fs.rmSync(runDir, { recursive: true, force: true });
    }
  } finally {
    model.dispose();
  }
}

async function main(): Promise<void> {
  process.env.RARL_BACKEND = "webgpu";
  await initBackend();
  const info = getWebgpuInfo();
  if (!info) throw new Error("webgpu started without adapter info");
  const software = info.software;
  out("# webgpu (Dawn) benchmark");
  out("");
  out(`- Command: \`npm run bench:gpu\` (packages/grpo/bench/gpu.ts), ${new Date().toISOString()}`);
  const mi = machineInfo();
  out(`- Machine: ${mi.cpu}, ${mi.cores} logical cores, ${mi.ramGiB.toFixed(1)} GiB RAM, Node ${mi.node}`);
  out(`- Load average at start (other processes share the cores): ${os.loadavg().map((x) => x.toFixed(1)).join(", ")}`);
  out(
    `- Adapter: ${info.description || info.device || "?"} (vendor "${info.vendor}", architecture "${info.architecture}", device "${info.device}"), Dawn backend ${info.backendType}, feature level ${info.featureLevel}${software ? ", SOFTWARE adapter (CPU)" : ""}`,
  );
  out(`- Limits: maxStorageBufferBindingSize ${info.limits.maxStorageBufferBindingSize}, maxBufferSize ${info.limits.maxBufferSize}`);
  out("");
  // The raw N^3 rate (the reference of every ratio) and tfjs vs tuned per model shape class.
  const mmOpts = matmulTableDefaults(software);
  const n = mmOpts.rawN ?? 1024;
  const { rawGflops: gflops } = await matmulGpuTable({ ...mmOpts, print: out });
  samplePeak();
  await attentionGpuTable({ reps: software ? 5 : 20, print: out }); // fused attention vs the tfjs composite
  // The bench's Rng is @rarl/core's source copy; sampleRow only calls its random().
  const hostSampler = { resolveSamplingParams, sampleRow: (raw: Float32Array, seen: number[], p: object, rng: { random(): number }, scratch: Float32Array) => sampleRow(raw, seen, p as ResolvedSamplingParams, rng as Rng, scratch) };
  await samplingGpuTable(hostSampler, { reps: software ? 5 : 20, print: out }); // token selection on the GPU vs the host
  const decodeTokens = software ? 8 : 128;
  const configJson: Record<string, Record<string, unknown>> = { bench: benchConfigJson(), "2b": QWEN2_VL_2B_INSTRUCT_CONFIG };
  const ours: OurFigures = { matmulTflops: gflops / 1000, configs: [], peakBytes: 0 };
  ours.configs.push(await modelFigures("bench", "bench config (~107M parameters, vocabulary 151936)", parseQwen2VLConfig(configJson.bench, "<bench config>"), decodeTokens, decodeTokens));
  if (!software || process.env.RARL_BENCH_2B === "1") {
    ours.configs.push(await modelFigures("2b", "Qwen2-VL-2B config (random weights)", parseQwen2VLConfig(configJson["2b"], "Qwen2-VL-2B config"), decodeTokens, decodeTokens));
  } else {
    out("- Qwen2-VL-2B config: skipped on a software adapter (8.8 GB of float32 weights; one forward would take tens of minutes on CPU cores); RARL_BENCH_2B=1 forces it");
  }
  out(`- peak GPU memory allocated by tfjs: ${(peakBytes / 2 ** 20).toFixed(0)} MiB`);
  ours.peakBytes = peakBytes;
  // The PyTorch reference: the same configs, prompt and sizes, float32 eager first (the step target's reference).
  const probe = probeTorch();
  let ref: ReturnType<typeof runTorchReference> | null = null;
  let refMissing = "";
  if (!probe.ok) {
    refMissing = `PyTorch reference not run (${probe.reason})`;
  } else {
    const keys = ours.configs.map((c) => c.key);
    const order: TorchRefSpec["runs"] = [];
    for (const [dtype, attn] of [["float32", "eager"], ["float32", "sdpa"], ["bfloat16", "sdpa"], ["bfloat16", "eager"]] as const) {
      for (const k of [...keys].reverse()) order.push({ config: k, dtype, attn }); // 2B before bench in each pair
    }
    const budget = Number(process.env.RARL_TORCH_BUDGET_S ?? 240);
    const spec: TorchRefSpec = {
      configs: keys.map((k) => {
        const p = promptFor(k, parseQwen2VLConfig(configJson[k], k));
        return { label: k, config: configJson[k], prompt: { inputIds: p.inputIds, imageGridThw: p.imageGridThw } };
      }),
      runs: order,
      decodeGs: [1, 8],
      decodeTokens,
      completionTokens: decodeTokens,
      numGenerations: 8,
      loraR: 8,
      loraAlpha: 16,
      beta: GRPO_DEFAULTS.beta,
      learningRate: GRPO_DEFAULTS.learningRate,
      matmulN: n,
      matmulReps: software ? 3 : 20,
      timeBudgetS: budget,
      seed: 1,
    };
    try {
      ref = runTorchReference(spec, { script: path.join(here, "torch_ref.py"), timeoutS: budget + 300 });
      for (const l of compareWithTorch(ours, ref)) out(l);
      out("");
    } catch (e) {
      refMissing = `PyTorch reference failed: ${(e as Error).message}`;
    }
  }
  if (refMissing) out(`- ${refMissing}`);
  // The GPU whose float32 peak the matmul target uses: PyTorch's CUDA device name where it ran (the adapter's
  // description may not name the model), else the adapter's; a software adapter has no peak.
  const gpuName = software ? `${info.device || info.description} (software adapter)` : ref?.cuda ? ref.deviceName : info.description || info.device;
  for (const l of formatTargets(issueTargets(ours, ref, gpuName, refMissing || undefined, software))) out(l);
  if (software) out("- Software adapter: these figures test the path only; GPU figures await a machine with a GPU.");
  const file = path.join(here, "RESULTS-gpu.md");
  writeFileAtomic(file, `${lines.join("\n")}\n`);
  console.error(`wrote ${file}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
