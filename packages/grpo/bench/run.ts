/**
 * `npm run bench` (in packages/grpo): one GRPO step of the LoRA policy on the issue-3 bench config (random
 * ~107M-parameter Qwen2-VL shape, 256-token prompt with one 224x224 image), G = 4 and G = 8, 64-token completions.
 * Writes bench/RESULTS.md: step time, samples/s, the share of generation / scoring / log-probs / backward / optimizer,
 * the backward pass's model FLOP/s against the raw matmul rate, and peak memory against weights + 2 x activations.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { getBackendName, initBackend, Rng, writeFileAtomic } from "@rarl/core";
import { buildQwen2VLFromSource, parseQwen2VLConfig } from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { benchConfigJson, randomSource } from "../../model/bench/random_checkpoint";
import { trackRealBytes } from "../../model/bench/real_bytes";
import { GRPO_DEFAULTS } from "../src/config";
import { GRPOTrainer } from "../src/grpo-trainer";
import { completionMask, grpoLoss } from "../src/math/loss";
import { readMetrics } from "../src/metrics";
import { QwenPolicy } from "../src/qwen-policy";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const COMPLETION = 64;
/** Completions per forward/backward (backwardBatchSize): 1, since one row's backward already takes ~2 GB of the ~4 GB wasm heap. */
const MICRO = 1;

await initBackend();
const backend = getBackendName() ?? tf.getBackend();
// Real heap buffer bytes (wasm only; null elsewhere): tf.profile counts tensors, and on wasm several share a buffer.
const real = trackRealBytes();
const cfgJson = benchConfigJson();
const cfg = parseQwen2VLConfig(cfgJson, "<bench config>");
const t0 = performance.now();
const model = buildQwen2VLFromSource(cfg, randomSource(cfg, 7));
const buildS = (performance.now() - t0) / 1000;
const modelWeightsReal = real?.live ?? 0;

// 256-token prompt: <|vision_start|> 64 image pads <|vision_end|> + text, image 224x224 -> grid 1x16x16.
const grid = [[1, 16, 16]];
const rngP = new Rng(3);
const pixelValues = Float32Array.from({ length: 256 * 1176 }, () => rngP.normal(0, 0.5));
const inputIds = [151644, 872, 198, 151652, ...new Array(64).fill(151655), 151653];
while (inputIds.length < 256 - 5) inputIds.push(1000 + rngP.int(30000));
inputIds.push(151645, 198, 151644, 77091, 198);

// Raw matmul rate on this backend (best of a few shapes of the model).
function rawMatmulGflops(): number {
  let best = 0;
  for (const [m, k, n] of [
    [256, 512, 512],
    [256, 512, 1536],
    [256, 1536, 512],
    [512, 512, 1536],
  ]) {
    const a = tf.randomNormal([m, k]);
    const b = tf.randomNormal([k, n]);
    tf.matMul(a, b).dispose();
    let bestT = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 5; i++) {
      const s = performance.now();
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
      bestT = Math.min(bestT, performance.now() - s);
    }
    best = Math.max(best, (2 * m * k * n) / (bestT / 1000) / 1e9);
    tf.dispose([a, b]);
  }
  return best;
}

/** Forward FLOPs (2·MACs) of the text decoder over B rows of S tokens (causal attention), lm_head on C tokens per row. */
function textForwardFlops(B: number, S: number, C: number): number {
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const kv = (H / cfg.numAttentionHeads) * cfg.numKeyValueHeads;
  const perTokenLayer = 2 * (H * H + 2 * H * kv + H * H + 3 * H * I);
  const attn = 2 * 2 * H * ((S * (S + 1)) / 2); // QKᵀ and PV, causal half
  return B * (cfg.numHiddenLayers * (S * perTokenLayer + attn) + C * 2 * H * cfg.vocabSize);
}

const raw = rawMatmulGflops();
const rows: string[] = [];
const memRows: string[] = [];
let stepCompare = "";
const notes: string[] = [];
for (const G of [4, 8]) {
  const policy = new QwenPolicy(model, null, { r: 8, alpha: 16 });
  // Non-zero B so the policy differs from the reference (as after some training).
  const names = policy.trainableNames();
  for (const [i, v] of policy.trainableVariables().entries()) if (names[i].endsWith("lora_B")) v.assign(tf.randomNormal(v.shape, 0, 0.01));
  const rewardRng = new Rng(G);
  /** One trainer step (fresh run dir) with checkpointing on or off: its metrics and the real-bytes peak above what was live before it. */
  const trainStep = async (gradientCheckpointing: boolean) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-bench-"));
    const trainer = new GRPOTrainer({
      config: { ...GRPO_DEFAULTS, gradientCheckpointing, numGenerations: G, maxCompletionLength: COMPLETION, beta: 0.04, learningRate: 1e-5, maxSteps: 1, saveSteps: 1000, progress: false, backwardBatchSize: MICRO },
      policy,
      examples: [{ id: "bench" }],
      buildPrompt: () => ({ inputIds, pixelValues, imageGridThw: grid }),
      rewards: (items) => ({ r: items.map(() => rewardRng.random()) }),
      runDir: dir,
    });
    const b0 = real?.live ?? 0;
    real?.resetPeak();
    await trainer.train({ handleSigint: false });
    const peak = real ? real.peak - b0 : 0;
    const metrics = readMetrics(dir)[0];
    fs.rmSync(dir, { recursive: true, force: true });
    return { metrics, peak };
  };
  const step = await trainStep(GRPO_DEFAULTS.gradientCheckpointing);
  const m = step.metrics;
  const stepPeak = step.peak;
  if (G === 4 && process.env.GRPO_BENCH_STEP_COMPARE === "1") {
    // Opt-in (adds two steps, ~1.5 min): the same step with checkpointing off, then on again, both warm, back to back.
    const off = await trainStep(false);
    const on = await trainStep(true);
    const t = (x: typeof m) => (x.timing as Record<string, number>).backward;
    stepCompare = `G = 4, two more trainer steps after the row above (GRPO_BENCH_STEP_COMPARE=1), both warm, back to back, checkpointing off then on: step ${(off.metrics.stepTime as number).toFixed(1)} s vs ${(on.metrics.stepTime as number).toFixed(1)} s (${((((on.metrics.stepTime as number) - (off.metrics.stepTime as number)) / (off.metrics.stepTime as number)) * 100).toFixed(0)}%); policy fwd+bwd ${t(off.metrics).toFixed(1)} s vs ${t(on.metrics).toFixed(1)} s (${(((t(on.metrics) - t(off.metrics)) / t(off.metrics)) * 100).toFixed(0)}%); real-bytes peak of the step above what was live before it ${(off.peak / 2 ** 20).toFixed(0)} MB vs ${(on.peak / 2 ** 20).toFixed(0)} MB.`;
  }
  const timing = m.timing as Record<string, number>;
  const total = m.stepTime as number;
  const share = (k: string) => `${((100 * timing[k]) / total).toFixed(0)}%`;
  const len = m["completions/mean_length"] as number;

  // Backward model FLOP/s and memory of one micro-batch (G rows) policy pass, measured in isolation.
  const h = await policy.prepare({ inputIds, pixelValues, imageGridThw: grid });
  const comps = Array.from({ length: MICRO }, (_, i) => Array.from({ length: COMPLETION }, (_, t) => 2000 + ((i * 131 + t * 17) % 50000)));
  const items = comps.map((c) => ({ prepared: h, completionIds: c }));
  const mask = tf.tensor2d(completionMask(comps.map((c) => c.length), COMPLETION), [MICRO, COMPLETION]);
  const ref = policy.withAdapterDisabled(() => policy.completionLogprobs(items, COMPLETION));
  const vars = policy.trainableVariables();
  const lossOf = () => grpoLoss({ logp: policy.completionLogprobs(items, COMPLETION), refLogp: ref, mask, advantages: comps.map((_, i) => (i % 2 ? 1 : -1)) }, { beta: 0.04, epsilonLow: 0.2, lossType: "grpo" });
  const base = tf.memory().numBytes;
  const fwdProf = await tf.profile(() => {
    policy.completionLogprobs(items, COMPLETION).dispose();
  });
  const actBytes = fwdProf.peakBytes - base;
  // Real buffer bytes: "resident" = everything live before the pass (model weights, LoRA + AdamW state, the cached
  // transposed lm_head, the prompt's image features, reference log-probs); activations (a) = the high-water mark
  // above it of a forward pass without a tape; per checkpointing setting, the fwd+bwd high-water mark above it and the
  // bytes the tape holds when the backward pass starts (activations (b) = that, without checkpointing).
  const resident = real?.live ?? 0;
  real?.resetPeak();
  tf.tidy(() => {
    policy.completionLogprobs(items, COMPLETION).dataSync();
  });
  const actReal = real ? real.peak - resident : 0;
  const fb: Record<"off" | "on", { peak: number; tape: number; s: number; loss: number }> = { off: { peak: 0, tape: 0, s: 0, loss: 0 }, on: { peak: 0, tape: 0, s: 0, loss: 0 } };
  const rawBefore = rawMatmulGflops();
  for (const rep of [0, 1, 2, 3, 4]) {
    for (const mode of ["off", "on"] as const) {
      policy.setGradientCheckpointing(mode === "on");
      const b0 = real?.live ?? 0;
      real?.resetPeak();
      const s = performance.now();
      let tape = 0;
      const { value, grads } = tf.variableGrads(() => {
        const l = lossOf();
        tape = (real?.live ?? 0) - b0;
        return l;
      }, vars);
      fb[mode].loss = value.dataSync()[0];
      const secs = (performance.now() - s) / 1000;
      value.dispose();
      tf.dispose(grads);
      fb[mode].peak = Math.max(fb[mode].peak, real ? real.peak - b0 : 0);
      fb[mode].tape = tape;
      if (rep > 0) fb[mode].s = fb[mode].s > 0 ? Math.min(fb[mode].s, secs) : secs; // best of the 4 warm runs, off and on interleaved
    }
  }
  const rawHere = (rawBefore + rawMatmulGflops()) / 2; // same-time raw rate (the machine is shared; load varies)
  policy.setGradientCheckpointing(GRPO_DEFAULTS.gradientCheckpointing);
  // Allocation breakdown only (tf.profile slows kernels down: the FLOP/s below use the unprofiled timings above).
  const bwdProf = await tf.profile(() => {
    const { value, grads } = tf.variableGrads(lossOf, vars);
    value.dataSync();
    value.dispose();
    tf.dispose(grads);
  });
  // Which kernels allocate the most during the fwd+bwd pass (for the model owners; tf.profile bytesAdded).
  const top = [...bwdProf.kernels]
    .sort((a, b) => b.bytesAdded - a.bytesAdded)
    .slice(0, 5)
    .map((k) => `${k.name} [${(k.outputShapes as number[][]).map((x) => x.join("x")).join(", ")}] +${(k.bytesAdded / 2 ** 20).toFixed(0)} MB`);
  const byKernel = new Map<string, number>();
  for (const k of bwdProf.kernels) byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + Math.max(0, k.bytesAdded));
  const topByName = [...byKernel.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6)
    .map(([n, b]) => `${n} ${(b / 2 ** 20).toFixed(0)} MB`);
  const S = inputIds.length + COMPLETION;
  const fwdFlops = textForwardFlops(MICRO, S, COMPLETION);
  const modelFlops = 3 * fwdFlops; // forward + backward (2x forward), the usual MFU convention
  // Executed FLOPs: with frozen base weights the backward needs only activation gradients (~1x forward; LoRA weight
  // gradients are negligible), so the work actually done is ~2x forward, ~3x with checkpointing (the recomputation).
  const rate = (mode: "off" | "on") => {
    const t = fb[mode].s;
    const model = modelFlops / t / 1e9;
    const exec = ((mode === "on" ? 3 : 2) * fwdFlops) / t / 1e9;
    return `${mode}: ${t.toFixed(1)} s, ${model.toFixed(2)} GFLOP/s = **${((100 * model) / rawHere).toFixed(0)}%** of raw (executed ${mode === "on" ? 3 : 2} x F: ${exec.toFixed(2)} = ${((100 * exec) / rawHere).toFixed(0)}%)`;
  };
  const weightsBytes = base;
  tf.dispose([mask, ref]);
  policy.release(h);
  policy.dispose();

  const MBs = (b: number) => (b / 2 ** 20).toFixed(0);
  rows.push(
    `| ${G} | ${total.toFixed(1)} s | ${(G / total).toFixed(2)} | ${len.toFixed(0)} | ${share("generation")} (${timing.generation.toFixed(1)} s) | ${share("scoring")} | ${share("logprobs")} (${timing.logprobs.toFixed(1)} s) | ${share("backward")} (${timing.backward.toFixed(1)} s) | ${share("optimizer")} | ${rate("on")}; ${rate("off")}; raw rate measured around these runs ${rawHere.toFixed(1)} GFLOP/s |`,
  );
  const allowed = 2 * actReal;
  const met = (peak: number) => (peak <= allowed ? "**yes**" : "no");
  const cost = fb.off.s > 0 ? `${(((fb.on.s - fb.off.s) / fb.off.s) * 100).toFixed(0)}%` : "n/a";
  memRows.push(
    real
      ? `| ${G} | ${MBs(modelWeightsReal)} MB | ${MBs(resident)} MB | ${MBs(actReal)} MB | ${MBs(fb.off.tape)} MB | ${MBs(fb.off.peak)} MB (${met(fb.off.peak)}) | **${MBs(fb.on.peak)} MB** (${met(fb.on.peak)}) | ${MBs(allowed)} MB | ${MBs(fb.on.tape)} MB | ${fb.off.s.toFixed(2)} s / ${fb.on.s.toFixed(2)} s (${cost}) | ${MBs(stepPeak)} MB | ${MBs(bwdProf.peakBytes)} MB vs ${MBs(weightsBytes + 2 * actBytes)} MB |`
      : `| ${G} | n/a (backend ${backend}: real buffer bytes are measured on wasm only) | | | | | | | | ${fb.off.s.toFixed(2)} s / ${fb.on.s.toFixed(2)} s (${cost}) | | ${MBs(bwdProf.peakBytes)} MB vs ${MBs(weightsBytes + 2 * actBytes)} MB |`,
  );
  if (Math.abs(fb.on.loss - fb.off.loss) > 1e-5 * Math.max(1, Math.abs(fb.off.loss))) throw new Error(`bench: loss with checkpointing ${fb.on.loss} != without ${fb.off.loss}`);
  notes.push(`G=${G}: largest single allocations in the fwd+bwd pass: ${top.join("; ")}. Net bytes added per kernel type: ${topByName.join(", ")}.`);
  notes.push(`G=${G}: forward FLOPs of one micro-batch's policy pass ${(fwdFlops / 1e9).toFixed(2)} GFLOP (${MICRO} row x ${S} tokens, lm_head on ${COMPLETION} tokens).`);
  console.log(rows.at(-1));
  console.log(memRows.at(-1));
}

const md = `# @rarl/grpo benchmarks

- date: ${new Date().toISOString()}
- machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}
- backend: ${backend} (tfjs ${tf.version_core})
- command: \`cd packages/grpo && npm run bench\`

## One GRPO step (issue 8)

Config: the issue-3 bench model (vocab 151936 tied, hidden 512, 8 layers, 8/2 heads, intermediate 1536; vision depth 4,
embed 256; random weights built in ${buildS.toFixed(1)} s), LoRA r = 8, α = 16 on q/k/v/o; one prompt of 256 tokens with one
224x224 image (64 image tokens); G completions of up to ${COMPLETION} new tokens (temperature 1; a random model almost never
emits EOS, so they are ${COMPLETION} tokens); β = 0.04 (reference pass with the adapter off), μ = 1, random rewards;
backwardBatchSize ${MICRO} (one completion per forward/backward: the wasm heap, ~4 GB, does not hold two).
Step = generation (one prefill, cache tiled to G, KV-cached decode) + scoring + reference log-probs + policy
forward/backward + AdamW. Raw tf.matMul rate on this backend (best of 4 model shapes) at the start: **${raw.toFixed(1)} GFLOP/s** (the FLOP/s ratios use the rate measured around each micro-batch run).

Trainer config: GRPO_DEFAULTS, so gradientCheckpointing = ${GRPO_DEFAULTS.gradientCheckpointing} (every decoder layer recomputed in the backward pass).

| G | step time | samples/s | completion len | generation | scoring | ref log-probs | policy fwd+bwd | optimizer | one micro-batch fwd+bwd, checkpointing on / off: model FLOP/s (3 x forward FLOPs / time) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join("\n")}

### Peak memory of one micro-batch forward+backward (real wasm buffer bytes)

| G | model weights | resident before the pass | activations (a) | activations (b) | fwd+bwd peak above resident, checkpointing off (target met?) | checkpointing on (target met?) | allowed: 2 x activations (a) | tape at backward start, checkpointing on | fwd+bwd time off / on (recompute cost) | whole trainer step: peak above what was live before it | tf.profile (overcounts shared buffers): peak vs weights + 2 x act |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${memRows.join("\n")}

- Method: packages/model/bench/real_bytes.ts wraps the wasm backend's \`move\` (one call per new heap buffer) and
  \`disposeData\` (true only when a buffer's last reference is dropped and its heap block freed) and keeps the live
  sum of buffer bytes and its high-water mark. tf.profile (last column) counts every tensor, so buffers shared
  by several tensors (reshapes; the tape's saved copies, which @rarl/core's wasm Identity makes without copying) count
  once per tensor there.
- "resident" = every buffer live before the pass: the model's weights (first column), the LoRA variables and their
  AdamW moments, the transposed lm_head copy that generation caches for decode speed (297 MB; counted as weights
  here: it is a second layout of the tied embedding, built once per model), the prompt's image features and the
  reference log-probs. The peak columns are high-water marks above that.
- activations (a) = the high-water mark above resident of the same micro-batch's forward pass without a gradient tape
  (policy.completionLogprobs: decoder forward + the chunked lm_head log-softmax, whose [64, 151936] logits chunk
  dominates it); the target is peak <= resident + 2 x activations (a). activations (b) = the bytes the tape holds when
  the backward pass starts without checkpointing (every op's saved tensors: the usual meaning of activation memory),
  reported for comparison; against 2 x (b) both settings pass.
- fwd+bwd times: five runs per setting, off and on interleaved in one process, the best of the last four (the first
  is a warm-up; the best run is the least disturbed by the other processes on the shared cores); "recompute cost" is the relative increase of the whole micro-batch forward+backward. The FLOP/s
  ratios use a raw matmul rate measured just before and after these runs (the machine is shared).

${[...notes, stepCompare].filter((n) => n).map((n) => `- ${n}`).join("\n")}
- Targets (issue 8): backward >= 40% of the raw matmul rate (model FLOP/s, recomputation not counted as useful work);
  peak <= weights + 2 x activations (table above).
- One measured step per G (no repetition: a G = 8 step takes minutes on this 2-core machine), after the model warm-up
  in the trainer's first call; the machine is shared, so timings are noisy.
`;
writeFileAtomic(path.join(HERE, "RESULTS.md"), md);
console.log(md);
