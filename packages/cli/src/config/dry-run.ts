import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { initBackend, openCheckpoint, RarlError } from "@rarl/core";
import type { GRPOConfig, SFTConfig, TrainConfig } from "@rarl/grpo";
import { expectedWeights, loadQwen2VLConfig, normalizeKey, type Qwen2VLConfig } from "@rarl/model";
import type { LoadOptions, Sample } from "@rarl/datasets";
import type { TrainFileConfig } from "./train-schema";

/** The model folder does not match its config.json (missing tensors, wrong shapes, no tokenizer...). */
export class ModelFolderError extends RarlError {}

/**
 * The dry run found that training would fail: the memory estimate exceeds the memory available, or data rows would
 * stop training (`details.problems` lists each; code DRY_RUN_FAILED).
 */
export class DryRunError extends RarlError {}

/** Options of {@link dryRun}. */
export interface DryRunOptions {
  /** The validated config (loadTrainConfig). */
  config: TrainFileConfig;
  /** Folder of the config file (relative paths resolve from it). */
  configDir: string;
  /** Overrides maxSteps (as `--max-steps`). */
  maxSteps?: number;
  /** Matmul rate in GFLOP/s for the time estimate. Default: measured on the current tfjs backend (512x512 matmuls). */
  gflops?: number;
  /** Merged image tokens per prompt. Default 256 (a 448x448 image: (448/14)^2 patches / 4). */
  imageTokens?: number;
  /** Text tokens of a prompt (chat template, instruction, question). Default 96. */
  promptTextTokens?: number;
  /**
   * Memory the training may use, in bytes: the device's (e.g. a GPU's, stated with `--memory-gib`), since tfjs does
   * not report it. Default: this machine's total memory (os.totalmem()). A peak estimate above it is a problem.
   */
  memoryBytes?: number;
}

/** What a dry run found and estimated. Sizes in bytes. */
export interface DryRunReport {
  trainer: "grpo" | "sft";
  config: TrainConfig;
  model: {
    type: string;
    path?: string;
    tensors: number;
    dtypes: Record<string, number>;
    /** Parameters of the language model (embeddings, decoder, lm_head if untied) and of the vision tower. */
    params: { language: number; vision: number; total: number };
    loraParams: number;
    loraModules: number;
    files: string[];
  };
  data: { path: string; format: string; rows: number; used: number; skipped: number; skippedExamples: string[]; bySplit: Record<string, number> };
  /** Every `evalData` set, read through its loader like the training data. */
  evalData: Array<{ name: string; path: string; format: string; rows: number; used: number; skipped: number; skippedExamples: string[] }>;
  rewards: string[] | null;
  /** The GRPO loss and rollout settings in effect (null for SFT). */
  grpo: { lossType: string; importanceSamplingLevel: string; epsilon: number; epsilonHigh: number | null; delta: number | null; beta: number; topEntropyQuantile: number; multiObjectiveAggregation: string; scaleRewards: string; generation: string } | null;
  memory: {
    weightsFp32: number;
    weightsBf16: number;
    lora: number;
    gradients: number;
    optimizer: number;
    activations: number;
    kvCache: number;
    /** Weights (fp32, as tfjs holds them) + LoRA + gradients + optimizer + the larger of activations and KV cache. */
    peak: number;
  };
  time: { steps: number; flopsPerStep: number; gflops: number; gflopsSource: "stated" | "measured"; secondsPerStep: number; totalSeconds: number };
  assumptions: string[];
  warnings: string[];
  /** Memory the estimate is compared with (bytes) and where that number comes from. */
  memoryLimit: { bytes: number; source: string };
  /** Why training would fail (empty: config OK). `rarl train --dry-run` exits 1 when there is any. */
  problems: string[];
}

const product = (s: number[]) => s.reduce((a, b) => a * b, 1);

function listNames(names: string[], n = 5): string {
  return `${names.slice(0, n).join(", ")}${names.length > n ? ` and ${names.length - n} more` : ""}`;
}

/** Checks a Qwen2-VL folder against its config.json from the safetensors headers only (no tensor is read). */
export function checkModelFolder(
  dir: string,
  lora: { targetModules?: string[]; includeVision?: boolean; r?: number } = {},
): { cfg: Qwen2VLConfig; shapes: Map<string, number[]>; tensors: number; dtypes: Record<string, number>; files: string[]; loraParams: number; loraModules: number; warnings: string[] } {
  const warnings: string[] = [];
  const cfg = loadQwen2VLConfig(dir);
  const expected = expectedWeights(cfg);
  const hasSingle = fs.existsSync(path.join(dir, "model.safetensors"));
  const hasIndex = fs.existsSync(path.join(dir, "model.safetensors.index.json"));
  if (!hasSingle && !hasIndex) {
    throw new ModelFolderError(`${dir}: no model.safetensors or model.safetensors.index.json (model.path must be a Hugging Face Qwen2-VL folder)`, {
      code: "MODEL_NO_WEIGHTS",
      details: { file: dir, field: "model.path" },
    });
  }
  const ckpt = openCheckpoint(dir);
  const found = new Map<string, { shape: number[]; key: string }>();
  const dtypes: Record<string, number> = {};
  try {
    for (const key of ckpt.keys()) {
      const info = ckpt.info(key);
      found.set(normalizeKey(key), { shape: info.shape, key });
      dtypes[info.dtype] = (dtypes[info.dtype] ?? 0) + 1;
    }
  } finally {
    ckpt.close();
  }
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [name, shape] of expected) {
    const f = found.get(name);
    if (!f) missing.push(name);
    else if (f.shape.length !== shape.length || f.shape.some((d, i) => d !== shape[i])) wrong.push(`${f.key}: [${f.shape}] in the file, [${shape}] from config.json`);
  }
  const weightsFile = path.join(dir, hasIndex ? "model.safetensors.index.json" : "model.safetensors");
  if (wrong.length) {
    throw new ModelFolderError(`${weightsFile}: ${wrong.length} tensor(s) do not match ${path.join(dir, "config.json")}: ${listNames(wrong, 3)}`, {
      code: "MODEL_SHAPE_MISMATCH",
      details: { file: weightsFile, tensors: wrong },
    });
  }
  if (missing.length) {
    throw new ModelFolderError(`${weightsFile}: ${missing.length} tensor(s) that ${path.join(dir, "config.json")} needs are missing: ${listNames(missing)}`, {
      code: "MODEL_MISSING_TENSOR",
      details: { file: weightsFile, tensors: missing },
    });
  }
  const extra = [...found.keys()].filter((k) => !expected.has(k) && !(k === "lm_head.weight" && cfg.tieWordEmbeddings));
  if (extra.length) warnings.push(`${weightsFile}: ${extra.length} tensor(s) not used by this config: ${listNames(extra)}`);

  const files: string[] = [];
  for (const f of ["tokenizer.json", "preprocessor_config.json"]) {
    if (!fs.existsSync(path.join(dir, f))) {
      throw new ModelFolderError(`${path.join(dir, f)} is missing (the processor needs it; download it with the weights)`, { code: "MODEL_NO_PROCESSOR", details: { file: path.join(dir, f) } });
    }
    files.push(f);
  }
  for (const f of ["tokenizer_config.json", "chat_template.json", "generation_config.json"]) if (fs.existsSync(path.join(dir, f))) files.push(f);
  const hasTemplate =
    files.includes("chat_template.json") || (files.includes("tokenizer_config.json") && /"chat_template"/.test(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")));
  if (!hasTemplate) warnings.push(`${dir}: no chat template (chat_template.json or tokenizer_config.json "chat_template")`);
  // The tokenizer must not produce ids outside the embedding table.
  const tokFile = path.join(dir, "tokenizer.json");
  let tok: { model?: { vocab?: Record<string, number> }; added_tokens?: Array<{ id: number }> };
  try {
    tok = JSON.parse(fs.readFileSync(tokFile, "utf8"));
  } catch (e) {
    throw new ModelFolderError(`${tokFile}: not valid JSON: ${(e as Error).message}`, { code: "MODEL_BAD_TOKENIZER", details: { file: tokFile }, cause: e });
  }
  let maxId = -1;
  for (const id of Object.values(tok.model?.vocab ?? {})) if (id > maxId) maxId = id;
  for (const t of tok.added_tokens ?? []) if (t.id > maxId) maxId = t.id;
  if (maxId >= cfg.vocabSize) {
    throw new ModelFolderError(`${tokFile}: token id ${maxId} does not fit vocab_size ${cfg.vocabSize} of ${path.join(dir, "config.json")}`, {
      code: "MODEL_TOKENIZER_MISMATCH",
      details: { file: tokFile },
    });
  }

  const targets = lora.targetModules ?? ["q_proj", "k_proj", "v_proj", "o_proj"];
  const r = lora.r ?? 8;
  let loraParams = 0;
  let loraModules = 0;
  for (const [name, shape] of expected) {
    if (!name.endsWith(".weight") || shape.length !== 2) continue;
    const mod = name.slice(0, -".weight".length);
    if (mod.startsWith("visual.") && !lora.includeVision) continue;
    if (!targets.some((t) => mod === t || mod.endsWith(`.${t}`))) continue;
    loraModules++;
    loraParams += r * (shape[0] + shape[1]);
  }
  if (loraModules === 0) {
    throw new ModelFolderError(`model.lora.targetModules ${JSON.stringify(targets)} match no module of ${dir}`, { code: "CONFIG_INVALID", details: { field: "model.lora.targetModules" } });
  }
  return { cfg, shapes: expected, tensors: found.size, dtypes, files, loraParams, loraModules, warnings };
}

/** GFLOP/s of float32 matmuls on the current backend (a few 512x512 products after a warm-up). */
export async function measureMatmulGflops(n = 512, reps = 4): Promise<number> {
  await initBackend();
  const tf = await import("@tensorflow/tfjs-core");
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  try {
    tf.tidy(() => tf.matMul(a, b)).dataSync();
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) {
      const c = tf.matMul(a, b);
      c.dataSync();
      c.dispose();
    }
    const s = (performance.now() - t0) / 1000;
    return (2 * n ** 3 * reps) / s / 1e9;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** Memory and FLOP estimates of one training step (pure; see DryRunReport for the terms). */
export function estimateStep(o: {
  cfg: Qwen2VLConfig;
  params: { language: number; vision: number };
  loraParams: number;
  train: TrainConfig;
  imageTokens: number;
  promptTextTokens: number;
}): { memory: DryRunReport["memory"]; flopsPerStep: number; assumptions: string[] } {
  const { cfg, train } = o;
  const H = cfg.hiddenSize;
  const I = cfg.intermediateSize;
  const L = cfg.numHiddenLayers;
  const kvDim = cfg.numKeyValueHeads * cfg.headDim;
  const Sp = o.imageTokens + o.promptTextTokens;
  const C = train.maxCompletionLength;
  const S = Sp + C;
  const grpo = train.trainer === "grpo" ? (train as GRPOConfig) : null;
  const G = grpo ? grpo.numGenerations : 1;
  const prompts = grpo ? grpo.promptsPerStep : (train as SFTConfig).batchSize;
  const seqs = prompts * G;
  const total = o.params.language + o.params.vision;
  // Full fine-tuning (SFT "full") trains every language-model weight but the token embedding / lm_head.
  const full = train.trainer === "sft" && (train as SFTConfig).finetune === "full";
  const trainable = full ? o.params.language - cfg.vocabSize * H * (cfg.tieWordEmbeddings ? 1 : 2) : o.loraParams;
  // Values kept for backward per token and decoder layer (fp32): norm inputs, q/k/v, attention output, o_proj input,
  // gate/up/activation/down inputs, and the softmax probabilities (heads x S).
  const perTokenLayer = 5 * H + 2 * kvDim + 4 * I + cfg.numAttentionHeads * S;
  const chunk = grpo && grpo.backwardBatchSize > 0 ? Math.min(grpo.backwardBatchSize, seqs) : seqs;
  // gradientCheckpointing: the tape keeps each layer's input (H per token) and the backward pass holds one layer's
  // intermediates at a time (its recomputation); without it, every layer's intermediates.
  const ckpt = train.gradientCheckpointing !== false;
  const activations = 4 * chunk * S * ((ckpt ? L * H + perTokenLayer : L * perTokenLayer) + 2 * H);
  const kvCache = grpo ? 4 * 2 * L * kvDim * S * seqs : 0;
  const memory = {
    weightsFp32: 4 * total,
    weightsBf16: 2 * total,
    lora: full ? 0 : 4 * o.loraParams,
    gradients: 4 * trainable,
    optimizer: 8 * trainable,
    activations,
    kvCache,
    peak: 0,
  };
  memory.peak = memory.weightsFp32 + memory.lora + memory.gradients + memory.optimizer + Math.max(activations, kvCache);
  // FLOPs: 2 per parameter and token forward; backward through the frozen weights (LoRA) ~2 more (activation grads).
  const Nlm = o.params.language - cfg.vocabSize * H + (cfg.tieWordEmbeddings ? cfg.vocabSize * H : 0); // embedding lookup is no matmul; lm_head is
  const vision = 2 * o.params.vision * 4 * o.imageTokens; // patches = 4 x merged tokens
  // gradientCheckpointing recomputes the decoder layers (not the lm_head) once in each backward pass
  const recompute = ckpt ? 2 * (Nlm - cfg.vocabSize * H) : 0;
  let perPrompt: number;
  if (grpo) {
    const gen = 2 * Nlm * Sp + 2 * Nlm * C * G;
    const policy = (4 * Nlm + recompute) * S * G * grpo.numIterations + (grpo.numIterations > 1 ? 2 * Nlm * S * G : 0);
    const ref = grpo.beta > 0 ? 2 * Nlm * S * G : 0;
    perPrompt = vision + gen + policy + ref;
  } else {
    perPrompt = vision + (4 * Nlm + recompute) * S;
  }
  const flopsPerStep = perPrompt * prompts * train.gradientAccumulationSteps;
  const assumptions = [
    `prompt = ${o.imageTokens} image tokens + ${o.promptTextTokens} text tokens; completions at maxCompletionLength ${C} (upper bound)`,
    `${seqs} sequence(s) of ${S} tokens per micro-batch (${grpo ? `${prompts} prompt(s) x G=${G}` : `batchSize ${prompts}`}), ${chunk} per backward pass; weights and activations in fp32 as tfjs holds them; ${ckpt ? "gradientCheckpointing: each decoder layer's input kept, one layer's intermediates at a time, the decoder recomputed once per backward pass" : "no activation recomputation (gradientCheckpointing false)"}`,
    full
      ? `full fine-tuning: ${trainable} trainable language-model parameters (embedding / lm_head and vision tower frozen), AdamW state 2 fp32 values each`
      : "AdamW state: 2 fp32 values per LoRA parameter; gradients only for LoRA (vision tower and base weights frozen)",
    "time counts matmul FLOPs only; decoding is memory-bound, so generation takes longer than this on most devices",
  ];
  return { memory, flopsPerStep, assumptions };
}

/**
 * `rarl train --dry-run`: validates the model folder (config.json vs safetensors headers, tokenizer), every data file
 * (through @rarl/datasets with onError "skip", counting skips) and the rewards (plugins resolved by name), then
 * estimates memory and time per step without loading a tensor or training.
 */
export async function dryRun(o: DryRunOptions): Promise<DryRunReport> {
  const { config, configDir } = o;
  const warnings: string[] = [];
  // The model folder first (headers only): an incompatible checkpoint fails before the trainer and loaders load.
  const lora = (config.model.lora ?? {}) as { targetModules?: string[]; includeVision?: boolean; r?: number };
  const m = config.model.type === "qwen2vl" ? checkModelFolder(path.resolve(configDir, String(config.model.path)), lora) : null;
  const { resolveTrainConfig, resolveGeneration, resolveRewardWeights } = await import("@rarl/grpo");
  const { loadDataset } = await import("@rarl/datasets");
  const { RewardRegistry, resolveRewardConfig } = await import("@rarl/rewards");
  const raw: Record<string, unknown> = { ...config };
  if (o.maxSteps !== undefined) raw.maxSteps = o.maxSteps;
  // Trainer fields and their combinations (lossType, delta vs epsilon, cispo without epsilonHigh, topEntropyQuantile,
  // vLLM correction bounds) and the generation section: config errors naming the field, before anything is read.
  const train = resolveTrainConfig(raw, ["model", "data", "prompts", "rewards", "out", "evalData", "$schema", "generation"]);
  const generation = resolveGeneration(config.generation);
  let model: DryRunReport["model"];
  let estimate: ReturnType<typeof estimateStep> | null = null;
  if (m) {
    const dir = path.resolve(configDir, String(config.model.path));
    warnings.push(...m.warnings);
    let language = 0;
    let vision = 0;
    for (const [name, shape] of m.shapes) {
      if (name.startsWith("visual.")) vision += product(shape);
      else language += product(shape);
    }
    model = { type: "qwen2vl", path: dir, tensors: m.tensors, dtypes: m.dtypes, params: { language, vision, total: language + vision }, loraParams: m.loraParams, loraModules: m.loraModules, files: m.files };
    estimate = estimateStep({ cfg: m.cfg, params: { language, vision }, loraParams: m.loraParams, train, imageTokens: o.imageTokens ?? 256, promptTextTokens: o.promptTextTokens ?? 96 });
  } else {
    model = { type: String(config.model.type), tensors: 0, dtypes: {}, params: { language: 0, vision: 0, total: 0 }, loraParams: 0, loraModules: 0, files: [] };
    warnings.push(`model.type "${config.model.type}": no folder to check, no estimate`);
  }

  // Data: every row through the loader, bad rows counted.
  const read = async (d: { path: string; root?: string; limit?: number; split?: string; [k: string]: unknown }) => {
    const { limit, split, name: _name, ...loadOpts } = d;
    const dataPath = path.resolve(configDir, d.path);
    const stream = loadDataset({
      ...(loadOpts as unknown as LoadOptions),
      path: dataPath,
      root: d.root ? path.resolve(configDir, d.root) : undefined,
      onError: "skip",
    });
    const bySplit: Record<string, number> = {};
    let rows = 0;
    let inSplit = 0;
    const samples: Sample[] = [];
    for await (const s of stream) {
      rows++;
      const sp = s.split ?? "(none)";
      bySplit[sp] = (bySplit[sp] ?? 0) + 1;
      if (!split || s.split === split) {
        inSplit++;
        if (!limit || samples.length < limit) samples.push(s);
      }
    }
    const used = limit ? Math.min(limit, inSplit) : inSplit;
    const skippedExamples = stream.skipped.slice(0, 5).map((s) => `${s.file}:${s.row}: ${s.reason}`);
    return { dataPath, bySplit, rows, inSplit, used, skipped: stream.skipped.length, skippedExamples, samples, origin: (id: string) => stream.originOf(id) };
  };
  const { limit, split } = config.data;
  const { dataPath, bySplit, rows, inSplit, used, skipped, skippedExamples, samples, origin } = await read(config.data);
  const problems: string[] = [];
  if (skipped && config.data.onError !== "skip") {
    problems.push(`data: ${skipped} bad row(s) would stop training (first: ${skippedExamples[0]}); fix them, or set data.onError "skip" to leave them out`);
  }
  // Prompts longer than the model takes stop training at load: the same check, with the model folder's tokenizer.
  if (m) {
    const { Qwen2Tokenizer } = await import("@rarl/model");
    const { checkPromptLengths, promptText, TrainDataError } = await import("@rarl/grpo");
    const { BUILTIN_TEMPLATES, buildPrompt, TRAINING_TEMPLATES } = await import("@rarl/prompts");
    const prompts = (config.prompts ?? {}) as { templates?: string[]; system?: string | null };
    const templates = prompts.templates ? prompts.templates.map((n) => BUILTIN_TEMPLATES[n]).filter(Boolean) : [...TRAINING_TEMPLATES];
    const tok = Qwen2Tokenizer.fromFile(path.join(path.resolve(configDir, String(config.model.path)), "tokenizer.json"));
    // the longest rendering over the templates the run may draw
    const render = (s: Sample) =>
      templates.map((t) => promptText(buildPrompt(s, t, { system: prompts.system }))).reduce((a, b) => (b.length > a.length ? b : a), "");
    try {
      await checkPromptLengths(samples, { maxPositions: m.cfg.maxPositionEmbeddings, maxCompletionLength: train.maxCompletionLength, render, encode: (t) => tok.encode(t), origin });
    } catch (e) {
      if (!(e instanceof TrainDataError)) throw e;
      problems.push(e.message);
    }
  }
  const evalData: DryRunReport["evalData"] = [];
  for (const e of config.evalData ?? []) {
    const r = await read(e as unknown as Parameters<typeof read>[0]);
    if (r.used === 0) warnings.push(`evalData "${e.name}": no samples${e.split ? ` in split "${e.split}" (found ${JSON.stringify(r.bySplit)})` : ""} in ${r.dataPath}`);
    evalData.push({ name: e.name, path: r.dataPath, format: e.format, rows: r.rows, used: r.used, skipped: r.skipped, skippedExamples: r.skippedExamples });
  }
  if (used === 0) {
    throw new ModelFolderError(`data: no usable samples in ${dataPath}${split ? ` (split "${split}"; found ${JSON.stringify(bySplit)})` : ""}`, {
      code: "DATA_EMPTY",
      details: { file: dataPath, field: "data" },
    });
  }
  if (limit && limit > inSplit) warnings.push(`data.limit ${limit} > ${inSplit} samples available`);

  // Rewards: validated, every `use` resolved (built-ins, plugins by package name or path), files checked.
  let rewards: string[] | null = null;
  if (train.trainer === "grpo" && config.rewards !== undefined) {
    const { config: rc, baseDir } = resolveRewardConfig(config.rewards, configDir);
    const registry = new RewardRegistry();
    rewards = [];
    for (const [i, e] of rc.rewards.entries()) {
      const def = await registry.resolve(e.use, baseDir).catch((err: Error) => {
        throw new ModelFolderError(`rewards.rewards[${i}].use "${e.use}": ${err.message}`, { code: "REWARD_UNRESOLVED", details: { field: `rewards.rewards[${i}].use` }, cause: err });
      });
      rewards.push(e.name ?? def.name);
    }
    // rewardWeights must name these rewards (or give one weight per reward).
    const grpo = train as GRPOConfig;
    resolveRewardWeights(grpo.rewardWeights, rewards, Object.fromEntries(rc.rewards.map((e, i) => [rewards![i], e.weight ?? 1])));
    if (rc.encoder) {
      for (const f of ["config.json", "tokenizer.json"]) {
        const p = path.resolve(baseDir, rc.encoder, f);
        if (!fs.existsSync(p)) throw new ModelFolderError(`rewards.encoder: ${p} is missing`, { code: "REWARD_NO_ENCODER", details: { file: p, field: "rewards.encoder" } });
      }
    } else if (rc.scorer !== "lexical-f1" && rewards.some((n) => n === "accuracy" || n === "reasoning")) {
      warnings.push('rewards: no "encoder" and scorer is not "lexical-f1": open-question accuracy and reasoning will fail');
    }
  }

  // Time.
  const steps = train.maxSteps > 0 ? train.maxSteps : Math.max(1, Math.ceil((train.numEpochs * used) / ((train.trainer === "grpo" ? (train as GRPOConfig).promptsPerStep : (train as SFTConfig).batchSize) * train.gradientAccumulationSteps)));
  let gflops = o.gflops ?? 0;
  const gflopsSource: "stated" | "measured" = o.gflops ? "stated" : "measured";
  if (!o.gflops && estimate) gflops = await measureMatmulGflops();
  const flopsPerStep = estimate?.flopsPerStep ?? 0;
  const secondsPerStep = gflops > 0 ? flopsPerStep / (gflops * 1e9) : 0;
  const memoryLimit = o.memoryBytes !== undefined ? { bytes: o.memoryBytes, source: "stated (--memory-gib)" } : { bytes: os.totalmem(), source: "this machine's (os.totalmem)" };
  if (estimate && !(estimate.memory.peak <= memoryLimit.bytes)) {
    const mem = estimate.memory;
    const terms = Object.entries({ weights: mem.weightsFp32, "LoRA + grads + AdamW": mem.lora + mem.gradients + mem.optimizer, activations: mem.activations, "KV cache": mem.kvCache })
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${gib(v)}`)
      .join(", ");
    problems.push(
      `memory: the estimated peak ${gib(mem.peak)} exceeds ${memoryLimit.source} memory ${gib(memoryLimit.bytes)} (${terms}); lower numGenerations, promptsPerStep/batchSize or maxCompletionLength, or set backwardBatchSize`,
    );
  }
  return {
    trainer: train.trainer,
    config: train,
    model,
    data: { path: dataPath, format: config.data.format, rows, used, skipped, skippedExamples, bySplit },
    evalData,
    rewards,
    grpo:
      train.trainer === "grpo"
        ? (() => {
            const g = train as GRPOConfig;
            return {
              lossType: g.lossType,
              importanceSamplingLevel: g.importanceSamplingLevel,
              epsilon: g.epsilon,
              epsilonHigh: g.epsilonHigh,
              delta: g.delta,
              beta: g.beta,
              topEntropyQuantile: g.topEntropyQuantile,
              multiObjectiveAggregation: g.multiObjectiveAggregation,
              scaleRewards: g.scaleRewards,
              generation: generation ? `vllm ${generation.baseUrl} (${generation.model}), importance sampling ${g.vllmImportanceSamplingCorrection ? `${g.vllmImportanceSamplingMode} [${g.vllmImportanceSamplingClipMin ?? "-inf"}, ${g.vllmImportanceSamplingClipMax ?? "inf"}]` : "off"}` : "local",
            };
          })()
        : null,
    memory: estimate?.memory ?? { weightsFp32: 0, weightsBf16: 0, lora: 0, gradients: 0, optimizer: 0, activations: 0, kvCache: 0, peak: 0 },
    time: { steps, flopsPerStep, gflops, gflopsSource, secondsPerStep, totalSeconds: secondsPerStep * steps },
    assumptions: estimate?.assumptions ?? [],
    warnings,
    memoryLimit,
    problems,
  };
}

const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
const count = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : String(n));
function duration(s: number): string {
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** The dry run as text (what `rarl train --dry-run` prints). */
export function formatDryRun(r: DryRunReport): string {
  const m = r.model;
  const lines = [
    r.problems.length
      ? `rarl train --dry-run: ${r.problems.length} problem(s), training would fail (trainer ${r.trainer})`
      : `rarl train --dry-run: config OK (trainer ${r.trainer})`,
    m.type === "qwen2vl"
      ? `model   ${m.path}: ${m.tensors} tensors (${Object.entries(m.dtypes)
          .map(([k, v]) => `${v} ${k}`)
          .join(", ")}) match config.json; ${count(m.params.total)} parameters (language ${count(m.params.language)}, vision ${count(m.params.vision)}); files ${m.files.join(", ")}`
      : `model   ${m.type} (nothing to check)`,
    m.type === "qwen2vl" ? `lora    ${m.loraModules} modules, ${count(m.loraParams)} trainable parameters` : "",
    `data    ${r.data.format} ${r.data.path}: ${r.data.rows} samples read (${Object.entries(r.data.bySplit)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}), ${r.data.used} used for training, ${r.data.skipped} skipped`,
    ...r.data.skippedExamples.map((s) => `          skipped ${s}`),
    ...r.evalData.flatMap((e) => [`eval    ${e.name} (${e.format} ${e.path}): ${e.rows} samples read, ${e.used} evaluated, ${e.skipped} skipped`, ...e.skippedExamples.map((s) => `          skipped ${s}`)]),
    r.rewards ? `rewards ${r.rewards.join(" + ")}` : "",
    r.grpo
      ? `loss    ${r.grpo.lossType} (${r.grpo.importanceSamplingLevel} level), epsilon ${r.grpo.epsilon}${r.grpo.epsilonHigh !== null ? `, epsilonHigh ${r.grpo.epsilonHigh}` : ""}${r.grpo.delta !== null ? `, delta ${r.grpo.delta}` : ""}, beta ${r.grpo.beta}${r.grpo.topEntropyQuantile < 1 ? `, top ${r.grpo.topEntropyQuantile} entropy tokens` : ""}; rewards ${r.grpo.multiObjectiveAggregation}, scale ${r.grpo.scaleRewards}; generation ${r.grpo.generation}`
      : "",
    m.type === "qwen2vl" ? "memory  (estimate)" : "",
    ...(m.type === "qwen2vl"
      ? [
          `  weights            ${gib(r.memory.weightsFp32)} fp32 (${gib(r.memory.weightsBf16)} bf16 on disk)`,
          `  LoRA + grads + AdamW ${gib(r.memory.lora + r.memory.gradients + r.memory.optimizer)}`,
          `  activations        ${gib(r.memory.activations)} (one micro-batch, training)`,
          `  KV cache           ${gib(r.memory.kvCache)} (G samples, generation)`,
          `  peak               ${gib(r.memory.peak)} (limit ${gib(r.memoryLimit.bytes)}: ${r.memoryLimit.source})`,
          `time    ${r.time.steps} steps x ${(r.time.flopsPerStep / 1e12).toFixed(2)} TFLOP at ${r.time.gflops.toFixed(1)} GFLOP/s (${r.time.gflopsSource}) = ${duration(r.time.secondsPerStep)}/step, ${duration(r.time.totalSeconds)} in all (lower bound)`,
          ...r.assumptions.map((a) => `  assumes ${a}`),
        ]
      : []),
    ...r.warnings.map((w) => `warning ${w}`),
    ...r.problems.map((p) => `problem ${p}`),
  ];
  return `${lines.filter(Boolean).join("\n")}\n`;
}

/** Runs the dry run and prints it to stdout; throws DryRunError (exit 1) when it found problems. */
export async function dryRunCommand(o: DryRunOptions): Promise<DryRunReport> {
  const r = await dryRun(o);
  process.stdout.write(formatDryRun(r));
  if (r.problems.length) {
    throw new DryRunError(`dry run: training would fail:\n  ${r.problems.join("\n  ")}`, { code: "DRY_RUN_FAILED", details: { problems: r.problems } });
  }
  return r;
}
