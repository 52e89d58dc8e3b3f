/**
 * Memory of one GRPO-sized forward+backward on the issue-3 bench config (1 row: 256-token image prompt + 64 completion
 * tokens, LoRA r = 8 on q/k/v/o, variableGrads of the summed completion log-probs through completionLogprobs'
 * shared-prompt path), in real wasm heap buffer bytes (./real_bytes.ts), with activation checkpointing off and on,
 * and with the cached transposed lm_head (./../src/generation/lm_head.ts) kept or released.
 *
 * `cd packages/model && npx tsx bench/memory_probe.ts` prints a JSON summary and writes bench/RESULTS-memory.md.
 *
 * Measured per case (each run twice, the larger peak and the second, warm time reported):
 * - fwd+bwd peak: high-water mark of live buffer bytes during `tf.variableGrads(...)`, minus the bytes live before it
 *   (weights, LoRA variables and, when kept, the transposed lm_head);
 * - tape at backward start: live bytes at the end of the differentiated function (the forward's temporaries are
 *   freed by then: what remains is what the tape saved for the backward pass, plus the scalar loss).
 * "Activations" of the micro-batch, two measured definitions: (a) the high-water mark above the weights of a forward
 * pass without a tape (transient working set); (b) the tape's saved bytes at backward start without checkpointing
 * (what autograd keeps for the backward pass: the usual meaning of activation memory).
 */
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { initBackend, Rng, writeFileAtomic } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { completionLogprobs } from "../src/generation/completion";
import { releaseTransposedLmHead, transposedLmHead } from "../src/generation/lm_head";
import type { TokenizedPrompt } from "../src/generation/types";
import { buildQwen2VLFromSource, parseQwen2VLConfig } from "../src/qwen2_vl/index";
import { benchConfigJson, benchImagePrompt, randomSource } from "./random_checkpoint";
import { trackRealBytes } from "./real_bytes";

await initBackend();
const real = trackRealBytes();
if (!real) throw new Error("memory_probe measures wasm heap buffers: run it on the wasm backend (RARL_BACKEND=wasm, the default)");
const cfg = parseQwen2VLConfig(benchConfigJson(), "<bench config>");
const model = buildQwen2VLFromSource(cfg, randomSource(cfg, 7));
const prompt: TokenizedPrompt = benchImagePrompt(cfg, new Rng(5));
const completion = Array.from({ length: 64 }, (_, i) => 3000 + i);
const vars: tf.Variable[] = [];
for (const [name, lin] of model.namedLinears()) {
  if (!/^model\.layers\.\d+\.self_attn\.[qkvo]_proj$/.test(name)) continue;
  const A = tf.variable(tf.randomUniform([8, lin.inFeatures], -0.05, 0.05, "float32", 1), true);
  const B = tf.variable(tf.randomNormal([lin.outFeatures, 8], 0, 0.01, "float32", 2), true);
  lin.lora = { A, B, scale: 2, dropout: 0 };
  vars.push(A, B);
}
const weights = real.live;
transposedLmHead(model);
const lmTBytes = real.live - weights;
const MB = (b: number) => Math.round(b / 2 ** 20);

/** Forward pass without a tape: high-water mark above what was live before it, and the best time of 3 runs. */
function forwardPeak(transposed: boolean): { peak: number; ms: number } {
  const base = real!.live;
  real!.resetPeak();
  let ms = Number.POSITIVE_INFINITY;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    tf.tidy(() => {
      const r = completionLogprobs(model, { prompts: [prompt], completions: [completion], transposedLmHead: transposed });
      tf.sum(r.logprobs).dataSync();
    });
    ms = Math.min(ms, performance.now() - t0);
  }
  return { peak: real!.peak - base, ms };
}

interface Case {
  checkpointing: boolean;
  transposed: boolean;
  peak: number;
  tape: number;
  ms: number;
  sum: number;
  gnorm: number;
}

function fwdBwd(checkpointing: boolean, transposed: boolean, out: Case = { checkpointing, transposed, peak: 0, tape: 0, ms: Number.POSITIVE_INFINITY, sum: 0, gnorm: 0 }): Case {
  model.gradientCheckpointing = checkpointing;
  for (let rep = 0; rep < 2; rep++) {
    const base = real!.live;
    real!.resetPeak();
    const t0 = performance.now();
    let tape = 0;
    const { value, grads } = tf.variableGrads(() => {
      const s = tf.tidy(() => tf.sum(completionLogprobs(model, { prompts: [prompt], completions: [completion], transposedLmHead: transposed }).logprobs) as tf.Scalar);
      tape = real!.live - base;
      return s;
    }, vars);
    out.sum = value.dataSync()[0];
    if (rep > 0) out.ms = Math.min(out.ms, performance.now() - t0); // the first run of each call is a warm-up
    out.peak = Math.max(out.peak, real!.peak - base);
    out.tape = tape;
    out.gnorm = tf.tidy(() => tf.sqrt(tf.addN(Object.values(grads).map((g) => tf.sum(tf.square(g))))).dataSync()[0]);
    value.dispose();
    tf.dispose(Object.values(grads));
  }
  model.gradientCheckpointing = false;
  return out;
}

/** off and on, interleaved twice (each call: a warm-up run + a timed run; the best timed run is kept). */
function pair(transposed: boolean): Case[] {
  const off = fwdBwd(false, transposed);
  const on = fwdBwd(true, transposed);
  fwdBwd(false, transposed, off);
  fwdBwd(true, transposed, on);
  return [off, on];
}
// With the transposed lm_head kept (the default: generation made it and keeps it for decode speed).
const fA = forwardPeak(true);
const actA = fA.peak;
const withT = pair(true);
// Released before the log-prob passes (they then use the (W · hᵀ)ᵀ form; the next generation rebuilds the copy).
releaseTransposedLmHead(model);
const fANoT = forwardPeak(false);
const actANoT = fANoT.peak;
const noT = pair(false);
const actB = withT[0].tape;
const cases = [...withT, ...noT];
const load = os.loadavg().map((x) => x.toFixed(2)).join(" ");
const summary = {
  weightsMB: MB(weights),
  lmHeadTransposedMB: MB(lmTBytes),
  activationsA_fwdPeakMB: { transposed: MB(actA), plain: MB(actANoT) },
  forwardOnlyMs: { transposed: Math.round(fA.ms), plain: Math.round(fANoT.ms) },
  activationsB_tapeMB: MB(actB),
  cases: cases.map((c) => ({ ...c, peakMB: MB(c.peak), tapeMB: MB(c.tape), ms: Math.round(c.ms) })),
  load,
};
console.log(JSON.stringify(summary, null, 1));

const row = (c: Case) =>
  `| ${c.checkpointing ? "on" : "off"} | ${c.transposed ? `kept (${MB(lmTBytes)} MB, live before the pass)` : "released"} | ${MB(c.tape)} MB | **${MB(c.peak)} MB** | ${(c.ms / 1000).toFixed(2)} s | ${c.sum.toFixed(4)} | ${c.gnorm.toExponential(6)} |`;
const md = `# @rarl/model: memory of one GRPO-sized forward+backward (real wasm buffer bytes)

- date: ${new Date().toISOString()}
- machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, Node ${process.version}, load average at the end: ${load}
- backend: ${tf.getBackend()} (tfjs ${tf.version_core}), 1 thread
- command: \`cd packages/model && npx tsx bench/memory_probe.ts\`

Issue-3 bench config (vocab 151936 tied, hidden 512, 8 layers, random weights), one row: 256-token prompt with a
224x224 image + 64 completion tokens, LoRA r = 8 on q/k/v/o, \`tf.variableGrads\` of the summed completion log-probs
(completionLogprobs, shared-prompt path). Bytes are real wasm heap buffers (bench/real_bytes.ts: the backend's
allocations and frees, so buffers shared by several tensors count once), above what was live before the pass.

- weights (model + LoRA): **${MB(weights)} MB**; the cached transposed lm_head copy: ${MB(lmTBytes)} MB.
- activations (a), the peak above the weights of a forward pass without a tape: ${MB(actA)} MB with the transposed
  lm_head, ${MB(actANoT)} MB without it (dominated by the [64, 151936] logits chunk of the log-softmax).
- activations (b), the bytes the tape holds when the backward pass starts, without checkpointing: **${MB(actB)} MB**.
- completionLogprobs runs the (frozen) vision tower under the tape too: its saved intermediates are most of the tape
  with checkpointing (a separate run measured ~69 MB for the tower alone). The GRPO trainer computes image features
  once, outside the tape, so its passes do not hold them (packages/grpo/bench/RESULTS.md).

| checkpointing | transposed lm_head | tape at backward start | fwd+bwd peak above weights | fwd+bwd time | Σ log-probs | grad norm |
| --- | --- | --- | --- | --- | --- | --- |
${cases.map(row).join("\n")}

Times: per case the best of two timed runs (each after a warm-up run), off and on interleaved in one process (the
machine is shared: load average above). A forward pass without a tape (the work the checkpointed backward pass
repeats, plus the lm_head log-softmax it does not repeat) took ${(fA.ms / 1000).toFixed(2)} s with the transposed
lm_head, ${(fANoT.ms / 1000).toFixed(2)} s without it; checkpointing added
${((withT[1].ms - withT[0].ms) / 1000).toFixed(2)} s / ${((noT[1].ms - noT[0].ms) / 1000).toFixed(2)} s
(+${(((withT[1].ms - withT[0].ms) / withT[0].ms) * 100).toFixed(0)}% / +${(((noT[1].ms - noT[0].ms) / noT[0].ms) * 100).toFixed(0)}%) to the forward+backward.
`;
const here = path.dirname(fileURLToPath(import.meta.url));
writeFileAtomic(path.join(here, "RESULTS-memory.md"), md);
console.log(md);
