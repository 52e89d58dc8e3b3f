import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fixturesDir, initBackend, writeFileAtomic } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { Tokenizer } from "tokenizers";
import { BertEncoder, BertScorer, CompositeReward, type EncoderConfig, loadTokenCounter, type RewardContext, RewardRegistry, type RewardSample } from "../src/index";

process.env.RARL_BACKEND ??= "wasm";
const here = path.dirname(fileURLToPath(import.meta.url));

function fixtures(): string {
  return fixturesDir();
}

const FINDINGS = [
  "a small opacity in the left lower lobe",
  "no pleural effusion",
  "the heart size is within normal limits",
  "mild thickening of the bronchial walls",
  "a hyperintense lesion with surrounding edema",
  "no midline shift",
  "the liver has a smooth contour",
  "a rounded hypodense lesion in the spleen",
];

const NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];

/**
 * 64 distinct completions as in a GRPO step: 8 prompts (8 distinct reference answers/reasonings) x 8 sampled
 * completions each (every completion text differs, so BERTScore's per-batch text deduplication does not help).
 */
function makeBatch(n: number): Array<{ completion: string; sample: RewardSample }> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const p = Math.floor(i / 8);
    const g = i % 8;
    const f = (k: number) => FINDINGS[(p + k) % FINDINGS.length];
    const think = `Looking at image ${NUMBERS[g]}, I see ${f(g % 3)}. There is ${f(1 + (g % 2))}, and ${f(2)}. I also note ${f(3)} over ${NUMBERS[(g + p) % 12]} slices and ${f(4)}. Considering ${f(5)} together with ${f(6)}, the most likely finding is ${f(7)}, which answers the question.`;
    const ref = `On this study we see ${f(1)} with ${f(0)}; additionally ${f(3)}. ${f(2)}, and ${f(6)}. Overall ${f(7)}.`;
    out.push({
      completion: `<think>${think}</think><answer>${f(7 - (g % 2))} (${NUMBERS[g]})</answer>`,
      sample: { id: `b${i}`, answer: f(7), answer_type: "open" as const, reasoning: ref },
    });
  }
  return out;
}

/** A bert-base-sized encoder with random weights (N(0, 0.02) via a fast LCG + Box-Muller-free approximation). */
function randomBertBase(): BertEncoder {
  const cfg: EncoderConfig = {
    family: "bert",
    hiddenSize: 768,
    numLayers: 12,
    numHeads: 12,
    intermediateSize: 3072,
    layerNormEps: 1e-12,
    maxPositions: 512,
    padTokenId: 0,
    hiddenAct: "gelu",
    vocabSize: 30522,
  };
  let s = 12345 >>> 0;
  const rand = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const fill = (n: number, kind: "w" | "one" | "zero") => {
    const a = new Float32Array(n);
    if (kind === "one") a.fill(1);
    else if (kind === "w") for (let i = 0; i < n; i++) a[i] = (rand() + rand() + rand() - 1.5) * 0.04; // approx N(0, 0.02)
    return a;
  };
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const shapes: Record<string, number[]> = {
    "embeddings.word_embeddings.weight": [cfg.vocabSize, H],
    "embeddings.position_embeddings.weight": [cfg.maxPositions, H],
    "embeddings.token_type_embeddings.weight": [2, H],
    "embeddings.LayerNorm.weight": [H],
    "embeddings.LayerNorm.bias": [H],
  };
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `encoder.layer.${l}`;
    for (const m of ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]) {
      shapes[`${p}.${m}.weight`] = [H, H];
      shapes[`${p}.${m}.bias`] = [H];
    }
    shapes[`${p}.intermediate.dense.weight`] = [I, H];
    shapes[`${p}.intermediate.dense.bias`] = [I];
    shapes[`${p}.output.dense.weight`] = [H, I];
    shapes[`${p}.output.dense.bias`] = [H];
    for (const ln of ["attention.output.LayerNorm", "output.LayerNorm"]) {
      shapes[`${p}.${ln}.weight`] = [H];
      shapes[`${p}.${ln}.bias`] = [H];
    }
  }
  return new BertEncoder(cfg, (name) => {
    const shape = shapes[name];
    if (!shape) return undefined;
    const n = shape.reduce((a, b) => a * b, 1);
    const kind = name.includes("LayerNorm.weight") ? "one" : name.endsWith(".bias") ? "zero" : "w";
    return { shape, data: fill(n, kind) };
  });
}

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const r = await fn();
  return [(performance.now() - t0) / 1000, r];
}

async function main() {
  const backend = await initBackend();
  const fx = fixtures();
  const batch = makeBatch(64);
  const counter = loadTokenCounter(path.join(fx, "qwen2vl-tiny", "tokenizer.json"));
  const tokens = await Promise.all(batch.map((b) => counter.countTokens(b.completion)));
  const meanTokens = tokens.reduce((a, b) => a + b, 0) / tokens.length;
  const reg = new RewardRegistry();
  const composite = new CompositeReward(["format", "length", "accuracy", "reasoning"].map((n) => ({ reward: reg.get(n), weight: 1 })));
  const rows: string[] = [];

  async function measure(label: string, ctx: RewardContext, reps: number, comp = composite) {
    await comp.scoreBatch(batch.slice(0, 2), ctx); // warm-up (kernels, tokenizer)
    const times: number[] = [];
    for (let r = 0; r < reps; r++) {
      const [t] = await time(() => comp.scoreBatch(batch, ctx));
      times.push(t);
    }
    const best = Math.min(...times);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    rows.push(`| ${label} | 64 | ${reps} | ${mean.toFixed(3)} | ${best.toFixed(3)} | ${(64 / mean).toFixed(1)} |`);
    console.log(rows[rows.length - 1]);
  }

  const tiny = await BertScorer.fromFolder(path.join(fx, "bertscore-tiny"));
  await measure("format + length + accuracy + reasoning, BERTScore bertscore-tiny (H=32, L=2)", { tokenizer: counter, similarity: tiny }, 5);
  const noEncoder = new CompositeReward(["format", "length"].map((n) => ({ reward: reg.get(n), weight: 1 })));
  await measure("format + length only (no encoder)", { tokenizer: counter }, 5, noEncoder);
  const tokBase = Tokenizer.fromFile(path.join(fx, "bertscore-tiny", "tokenizer.json")); // bert-base-uncased vocabulary
  const t0 = performance.now();
  const base = await BertScorer.create(randomBertBase(), tokBase);
  const buildS = (performance.now() - t0) / 1000;
  await measure("format + length + accuracy + reasoning, BERTScore random bert-base (H=768, L=12, heads 12, FFN 3072)", { tokenizer: counter, similarity: base }, 1);
  const refIds = await base.tokenize(batch.map((b) => b.sample.reasoning as string));
  const candIds = await base.tokenize(batch.map((b) => b.completion));
  tiny.dispose();
  base.dispose();

  const cpu = os.cpus();
  const md = `# @rarl/rewards benchmark

Rewards per second for one batch of 64 completions scored with the composite reward (format + length + accuracy +
reasoning, weights 1), i.e. 64 / (seconds per batch). Open-ended questions, so accuracy and reasoning both call BERTScore
(reasoning: the \`<think>\` text vs a reference reasoning; accuracy: the answer vs the reference answer). The batch mimics a GRPO step: 8 prompts x 8 distinct
completions, so 64 distinct completion texts and 8 distinct references. Texts are deduplicated per batch; encoder
batches are padded and length-sorted.

- Machine: ${cpu[0]?.model ?? "unknown"}, ${cpu.length} logical cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.arch()}, Node ${process.version}
- Backend: tfjs ${tf.version_core} \`${backend}\` (1 thread)
- Completions: 64, mean ${meanTokens.toFixed(1)} Qwen2-VL tokens (min ${Math.min(...tokens)}, max ${Math.max(...tokens)});
  BERT tokens per completion mean ${(candIds.reduce((a, b) => a + b.length, 0) / 64).toFixed(1)}, per reference reasoning mean ${(refIds.reduce((a, b) => a + b.length, 0) / 64).toFixed(1)}
- Random bert-base encoder: built in memory in ${buildS.toFixed(1)} s (weights ~N(0, 0.02), LayerNorm 1/0; never written to disk); 1 rep only, since one batch takes minutes on this shared machine
- Command: \`cd packages/rewards && npm run bench\` (\`tsx bench/run.ts\`); generated ${new Date().toISOString()}

| reward set / encoder | batch | reps | mean s/batch | best s/batch | rewards/s |
| --- | --- | --- | --- | --- | --- |
${rows.join("\n")}

The machine is shared (2 cores, several concurrent users), so timings are noisy; treat them as order of magnitude.
`;
  writeFileAtomic(path.join(here, "RESULTS.md"), md);
  console.log(md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
