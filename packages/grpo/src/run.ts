import fs from "node:fs";
import path from "node:path";
import { getLogger, initBackend, withOutputLock, writeFileAtomic } from "@rarl/core";
import { imageInput, loadDataset, type Sample } from "@rarl/datasets";
import { loadQwen2VL, loadQwen2VLConfig, Qwen2Tokenizer } from "@rarl/model";
import { BUILTIN_TEMPLATES, buildPrompt, type ChatMessage, type Template, TemplateSampler, TRAINING_TEMPLATES } from "@rarl/prompts";
import { buildRewards, type RewardConfig, RewardRegistry, type RewardSet, resolveRewardConfig } from "@rarl/rewards";
import { closestName, type GRPOConfig, resolveRewardWeights, resolveTrainConfig, type SFTConfig, type TrainConfig } from "./config";
import { RunDirError, TrainConfigError, TrainDataError } from "./errors";
import { GRPOTrainer } from "./grpo-trainer";
import type { TrainResult } from "./loop";
import type { Policy, PreparedPrompt, RewardScorer } from "./policy";
import { QwenFullPolicy } from "./qwen-full";
import { type QwenLoraOptions, QwenPolicy } from "./qwen-policy";
import { SFTTrainer } from "./sft-trainer";
import { ToyPolicy } from "./testing/toy-policy";
import { VllmBackend } from "./vllm-backend";

const log = getLogger("grpo");

/** The sections of a `rarl train` config file besides the trainer fields. */
export interface TrainFileSections {
  /**
   * The policy. `{"type": "toy", "vocab"?, "rank"?, "alpha"?}`: the toy bigram model (tests, demos).
   * `{"type": "qwen2vl", "path": DIR, "lora"?: {r, alpha, dropout, targetModules, useRslora}}`: Qwen2-VL from a
   * Hugging Face folder with LoRA (paper: r = 8, α = 16 on q/k/v/o). Required.
   */
  model: { type: "toy" | "qwen2vl"; [k: string]: unknown };
  /** The training data: @rarl/datasets LoadOptions (`format`, `path`, ...) plus `limit` (first N samples) and `split` (keep one split). Required. */
  data: { format: string; path: string; limit?: number; split?: string; [k: string]: unknown };
  /** Prompt diversity: template names (default: the paper's three training templates), optional weights, system prompt. */
  prompts?: { templates?: string[]; weights?: Record<string, number>; system?: string | null };
  /** The reward config (as for `rarl reward`), inline or a path relative to the config file. Required for GRPO. */
  rewards?: RewardConfig | string;
  /**
   * Where GRPO's completions are sampled: `{"backend": "local"}` (the policy itself; the default) or
   * `{"backend": "vllm", "baseUrl", "model", "syncEvery"?, ...}` (a vLLM server's OpenAI-compatible API, see
   * GenerationSection). Optional. Paper: local.
   */
  generation?: GenerationSection;
}

/** The `generation` section of a `rarl train` config (TRL: `use_vllm` + `vllm_server_base_url` + `vllm_mode` "server"). */
export interface GenerationSection {
  /** "local" (sample with the policy being trained) or "vllm" (a vLLM server, TRL's server mode). Default "local". Paper: local. */
  backend: "local" | "vllm";
  /** vLLM server root, e.g. "http://127.0.0.1:8000" (TRL `vllm_server_base_url`). Required for "vllm". Paper: not used. */
  baseUrl?: string;
  /** The base model name the server serves (`vllm serve NAME`). Required for "vllm". Paper: not used. */
  model?: string;
  /** Load the new LoRA adapter into the server every N optimizer updates. Default 1 (TRL syncs every step). Paper: not used. */
  syncEvery?: number;
  /** Folder the server can read where adapters are written (same machine or a shared mount). Default: a temp folder. Paper: not used. */
  adapterDir?: string;
  /** Retries of a failed request (network, HTTP 5xx/429, adapter lost by a restart), with exponential backoff. Default 5. Paper: not used. */
  maxRetries?: number;
  /** First backoff delay in ms, doubled per retry (capped at 30 s). Default 500. Paper: not used. */
  retryBackoffMs?: number;
  /** Request timeout in ms. Default 600000. Paper: not used. */
  timeoutMs?: number;
}

export interface RunTrainOptions {
  /** The parsed config file. */
  config: Record<string, unknown>;
  /** Folder of the config file (relative paths resolve from it). Default: cwd. */
  configDir?: string;
  /** RUN_DIR. Default: config.out, else "runs/<trainer>". */
  out?: string;
  /** Overrides maxSteps. */
  maxSteps?: number;
  /** Continue from the newest checkpoint in RUN_DIR. */
  resume?: boolean;
  /**
   * RUN_DIR already holds a run (metrics.jsonl, checkpoints/ or adapter/): delete that run's files and start over.
   * Without it (and without `resume`) such a RUN_DIR is refused with RunDirError RUN_EXISTS, so two runs never mix.
   */
  overwrite?: boolean;
  /** Passed to the trainer (tests). */
  onStep?: (record: Record<string, unknown>) => void;
  handleSigint?: boolean;
}

const SECTIONS = ["model", "data", "prompts", "rewards", "out", "generation"] as const;

/** Checks the `generation` section (before any model loads); returns the backend to build, or null for local. */
export function resolveGeneration(g: unknown): (GenerationSection & { backend: "vllm"; baseUrl: string; model: string }) | null {
  if (g === undefined || g === null) return null;
  const bad = (field: string, msg: string) => new TrainConfigError(`config: field "generation.${field}" ${msg}`, { code: "CONFIG_INVALID", details: { field: `generation.${field}` } });
  if (typeof g !== "object" || Array.isArray(g)) throw new TrainConfigError('config: "generation" must be an object like {"backend": "vllm", "baseUrl": ..., "model": ...}', { code: "CONFIG_INVALID", details: { field: "generation" } });
  const s = g as Record<string, unknown>;
  const known = ["backend", "baseUrl", "model", "syncEvery", "adapterDir", "maxRetries", "retryBackoffMs", "timeoutMs"];
  for (const k of Object.keys(s)) {
    if (!known.includes(k)) {
      const sug = closestName(k, known);
      throw bad(k, `is not a field of generation (known: ${known.join(", ")})${sug ? `; did you mean "${sug}"?` : ""}`);
    }
  }
  const backend = s.backend ?? "local";
  if (backend === "local") return null;
  if (backend !== "vllm") throw bad("backend", `must be "local" or "vllm", got ${JSON.stringify(backend)}`);
  if (typeof s.baseUrl !== "string" || !/^https?:\/\//.test(s.baseUrl)) throw bad("baseUrl", 'must be the server\'s http(s) root, e.g. "http://127.0.0.1:8000"');
  if (typeof s.model !== "string" || !s.model) throw bad("model", "must name the model the server serves");
  for (const k of ["syncEvery", "maxRetries", "retryBackoffMs", "timeoutMs"]) {
    const v = s[k];
    if (v !== undefined && !(typeof v === "number" && Number.isInteger(v) && v >= (k === "maxRetries" || k === "retryBackoffMs" ? 0 : 1))) throw bad(k, `must be an integer >= ${k === "maxRetries" || k === "retryBackoffMs" ? 0 : 1}`);
  }
  return s as unknown as GenerationSection & { backend: "vllm"; baseUrl: string; model: string };
}

/** Names of the reward components a reward config produces (resolving plugins), in its order. */
export async function rewardNames(rc: RewardConfig, baseDir: string): Promise<string[]> {
  const registry = new RewardRegistry();
  const out: string[] = [];
  for (const e of rc.rewards) out.push(e.name ?? (await registry.resolve(e.use, baseDir)).name);
  return out;
}

/** Files and folders whose presence means RUN_DIR holds a run. */
export const RUN_MARKERS = ["metrics.jsonl", "checkpoints", "adapter"] as const;
/** What a run writes into RUN_DIR (deleted by `overwrite`), besides its `.tmp-*` leftovers. */
const RUN_FILES = [...RUN_MARKERS, "samples.jsonl", "config.json"];

/** The run markers present in `runDir` (empty when it holds no run or does not exist). */
export function existingRun(runDir: string): string[] {
  return RUN_MARKERS.filter((m) => fs.existsSync(path.join(runDir, m)));
}

/**
 * Deletes the run in `runDir` (only what a run writes: metrics, samples, config.json, checkpoints/, adapter/ and
 * `.tmp-*` leftovers; other files stay). Everything is first renamed into one `.tmp-overwrite-*` folder, so an
 * interrupted overwrite leaves either the old run's files or none of them under their names, never a mix.
 */
export function clearRun(runDir: string): void {
  if (existingRun(runDir).length === 0) return;
  const trash = path.join(runDir, `.tmp-overwrite-${process.pid}-${Date.now()}`);
  fs.mkdirSync(trash);
  const names = [...RUN_FILES, ...fs.readdirSync(runDir).filter((n) => n.startsWith(".tmp-") && path.join(runDir, n) !== trash)];
  for (const n of names) if (fs.existsSync(path.join(runDir, n))) fs.renameSync(path.join(runDir, n), path.join(trash, n));
  fs.rmSync(trash, { recursive: true, force: true });
}

/** Refuses to start a fresh run into a RUN_DIR that holds one, unless `overwrite` (then clears it). */
export function prepareRunDir(runDir: string, o: { resume?: boolean; overwrite?: boolean }): void {
  if (o.resume && o.overwrite) {
    throw new RunDirError("--resume and --overwrite exclude each other: continue the run in RUN_DIR, or delete it and start over", { code: "RUN_BAD_OPTIONS", details: { runDir } });
  }
  if (fs.existsSync(runDir) && !fs.statSync(runDir).isDirectory()) {
    throw new RunDirError(`RUN_DIR ${runDir} is a file; expected a folder for metrics.jsonl, checkpoints/ and adapter/`, { code: "RUN_NOT_DIR", details: { runDir } });
  }
  if (o.resume) return;
  const found = existingRun(runDir);
  if (found.length === 0) return;
  if (!o.overwrite) {
    throw new RunDirError(
      `RUN_DIR ${runDir} already holds a run (${found.join(", ")}); pass --resume to continue it, --overwrite to delete it and start over, or choose another --out`,
      { code: "RUN_EXISTS", details: { runDir, found } },
    );
  }
  log.warn("overwrite: deleting the previous run", { runDir, found });
  clearRun(runDir);
}

/** A policy built from a config's `model` section; `dispose` frees it. */
export interface BuiltPolicy {
  policy: Policy<{ messages: ChatMessage[]; sample: Sample; root: string }, PreparedPrompt>;
  /** The longest sequence (prompt + completion, in tokens) the model takes; prompts are checked against it at load. */
  maxPositions?: number;
  dispose(): void;
}

/** The text of a prompt's messages (what the tokenizer sees, without the chat template's few special tokens and the image). */
export function promptText(messages: ChatMessage[]): string {
  return messages.map((m) => (typeof m.content === "string" ? m.content : m.content.map((p) => ("text" in p ? p.text : "")).join(""))).join("\n");
}

/** Tokens kept free for the chat template's markers (role tags, image start/end) in the prompt-length check. */
const TEMPLATE_TOKENS = 32;

/**
 * Checks, when the data is loaded, that every prompt fits the model: its text tokens + the template's markers +
 * maxCompletionLength <= maxPositions (image tokens are not counted: they depend on the decoded image size). A
 * prompt whose UTF-8 length already fits is not tokenized (a byte-level BPE token is at least one byte); a longer
 * one is tokenized up to 16 characters per allowed token. Throws one TrainDataError naming every row that does not
 * fit (file, row, sample id, its tokens and the limit), instead of a nameless failure in the middle of training.
 */
export async function checkPromptLengths(
  examples: readonly Sample[],
  o: {
    maxPositions: number;
    maxCompletionLength: number;
    render: (s: Sample) => string;
    encode: (text: string) => number[] | Promise<number[]>;
    origin?: (id: string) => { file: string; row: number } | undefined;
  },
): Promise<void> {
  const budget = o.maxPositions - o.maxCompletionLength - TEMPLATE_TOKENS;
  const rows: Array<{ file?: string; row?: number; id: string; tokens: string }> = [];
  for (const s of examples) {
    const text = o.render(s);
    if (Buffer.byteLength(text, "utf8") <= budget) continue;
    const cap = 16 * Math.max(budget + 1, 1);
    const n = (await o.encode(text.slice(0, cap))).length;
    if (n <= budget && text.length <= cap) continue;
    const where = o.origin?.(s.id);
    rows.push({ ...where, id: s.id, tokens: text.length > cap ? `more than ${n} tokens (${text.length} characters)` : `${n} tokens` });
  }
  if (!rows.length) return;
  const name = (r: (typeof rows)[number]) => `${r.file !== undefined ? `${r.file}, row ${r.row}, ` : ""}sample ${JSON.stringify(r.id)}`;
  const listed = rows.slice(0, 10).map((r) => `${name(r)}: prompt of ${r.tokens}`);
  if (rows.length > 10) listed.push(`... and ${rows.length - 10} more`);
  throw new TrainDataError(
    `data: ${rows.length} prompt(s) do not fit the model: at most ${budget} prompt tokens (maxPositions ${o.maxPositions} - maxCompletionLength ${o.maxCompletionLength} - ${TEMPLATE_TOKENS} for the template), then the image tokens:\n  ${listed.join("\n  ")}`,
    { code: "DATA_PROMPT_TOO_LONG", details: { rows, maxPositions: o.maxPositions, budget } },
  );
}

/** Factories for `model.type`; the Qwen2-VL adapter registers itself here when @rarl/model provides what it needs. */
export const POLICY_FACTORIES: Record<string, (model: TrainFileSections["model"], ctx: { configDir: string; cfg: TrainConfig }) => Promise<BuiltPolicy>> = {
  toy: async (m) => {
    const toy = new ToyPolicy({ vocab: (m.vocab as number) ?? 16, rank: (m.rank as number) ?? 4, alpha: (m.alpha as number) ?? 8, seed: (m.seed as number) ?? 0 });
    const V = toy.vocab;
    // The toy model sees a prompt as one token (a hash of the rendered text) and writes ids as text.
    const policy: BuiltPolicy["policy"] = {
      trainableVariables: () => toy.trainableVariables(),
      trainableNames: () => toy.trainableNames(),
      prepare: ({ messages }) => {
        const text = JSON.stringify(messages);
        let h = 0;
        for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
        return { promptIds: [h % V], promptText: text };
      },
      release: () => {},
      generate: (p, o) => toy.generate(p, o),
      completionLogprobs: (items, T, temp) => toy.completionLogprobs(items, T, temp),
      completionLogprobsWithEntropy: (items, T, temp) => toy.completionLogprobsWithEntropy(items, T, temp),
      withAdapterDisabled: (fn) => toy.withAdapterDisabled(fn),
      saveAdapter: (dir) => toy.saveAdapter(dir),
      encode: (text) => Array.from(text, (ch) => ch.charCodeAt(0) % V),
    };
    return { policy, dispose: () => toy.dispose() };
  },
  qwen2vl: async (m, { configDir, cfg }) => {
    if (typeof m.path !== "string") throw new TrainConfigError('model.path (a Hugging Face Qwen2-VL folder) is required for model.type "qwen2vl"', { code: "CONFIG_INVALID", details: { field: "model.path" } });
    const dir = path.resolve(configDir, m.path);
    const { model, processor } = await loadQwen2VL(dir);
    const full = cfg.trainer === "sft" && (cfg as SFTConfig).finetune === "full";
    const q = full ? new QwenFullPolicy(model, processor, dir) : new QwenPolicy(model, processor, { seed: cfg.seed, ...((m.lora as QwenLoraOptions) ?? {}) });
    const policy: BuiltPolicy["policy"] = {
      trainableVariables: () => q.trainableVariables(),
      trainableNames: () => q.trainableNames(),
      prepare: ({ messages, sample, root }) => q.prepare({ messages, images: [imageInput(sample, root)] }),
      release: (h) => q.release(h),
      generate: (h, o) => q.generate(h, o),
      completionLogprobs: (items, T, temp) => q.completionLogprobs(items, T, temp),
      completionLogprobsWithEntropy: (items, T, temp) => q.completionLogprobsWithEntropy(items, T, temp),
      withAdapterDisabled: (fn) => q.withAdapterDisabled(fn),
      saveAdapter: (dir) => q.saveAdapter(dir),
      // SFT targets end with the end-of-turn token, as the chat template would write them.
      encode: async (text) => [...(await q.encode(text)), processor?.tokenizer.specialIds.imEnd ?? 151645],
    };
    return {
      policy,
      maxPositions: model.config.maxPositionEmbeddings,
      dispose: () => {
        q.dispose();
        model.dispose();
      },
    };
  },
};

/**
 * For `model.type`s whose position limit and tokenizer can be read from the model folder without loading weights:
 * lets runTrain check prompt lengths before the model loads (a too-long row then costs no model load).
 */
export const PROMPT_LIMITS: Record<string, (model: TrainFileSections["model"], ctx: { configDir: string }) => { maxPositions: number; encode: (text: string) => Promise<number[]> }> = {
  qwen2vl: (m, { configDir }) => {
    if (typeof m.path !== "string") throw new TrainConfigError('model.path (a Hugging Face Qwen2-VL folder) is required for model.type "qwen2vl"', { code: "CONFIG_INVALID", details: { field: "model.path" } });
    const dir = path.resolve(configDir, m.path);
    const tok = Qwen2Tokenizer.fromFile(path.join(dir, "tokenizer.json"));
    return { maxPositions: loadQwen2VLConfig(dir).maxPositionEmbeddings, encode: (t) => tok.encode(t) };
  },
};

function templatesFrom(names?: string[]): Template[] {
  if (!names) return [...TRAINING_TEMPLATES];
  return names.map((n) => {
    const t = BUILTIN_TEMPLATES[n];
    if (!t) throw new TrainConfigError(`prompts.templates: unknown template "${n}" (known: ${Object.keys(BUILTIN_TEMPLATES).join(", ")})`, { code: "CONFIG_INVALID", details: { field: "prompts.templates" } });
    return t;
  });
}

/** Adapts @rarl/rewards' composite to the trainer's RewardScorer (one array per component). */
export function compositeScorer(set: RewardSet): RewardScorer<Sample> {
  return async (items) => {
    const scores = await set.composite.scoreBatch(
      items.map((it) => ({
        completion: it.completion,
        sample: { id: it.example.id, answer: it.example.answer, reasoning: it.example.reasoning ?? null, answer_type: it.example.answer_type, choices: it.example.choices ?? null, modality: it.example.modality ?? null, extra: it.example.extra ?? null },
      })),
      set.ctx,
    );
    const out: Record<string, number[]> = {};
    for (const c of set.composite.components) out[c.name] = scores.map((s) => s.components[c.name]);
    return out;
  };
}

/**
 * `rarl train`: loads the data, builds the policy, prompts and rewards from the config, and runs the GRPO or SFT
 * trainer into RUN_DIR (metrics.jsonl, samples.jsonl, checkpoints/, adapter/). RUN_DIR is locked for the run
 * (@rarl/core lockOutput): a second writer gets an OutputLockedError naming this process's PID.
 */
export async function runTrain(o: RunTrainOptions): Promise<TrainResult> {
  const configDir = o.configDir ?? process.cwd();
  const raw = { ...o.config };
  const sections = raw as unknown as TrainFileSections & { out?: string };
  if (o.maxSteps !== undefined) raw.maxSteps = o.maxSteps;
  const cfg = resolveTrainConfig(raw, SECTIONS);
  if (!sections.model || typeof sections.model !== "object") throw new TrainConfigError('config: "model" section is required', { code: "CONFIG_INVALID", details: { field: "model" } });
  if (!sections.data || typeof sections.data !== "object") throw new TrainConfigError('config: "data" section is required', { code: "CONFIG_INVALID", details: { field: "data" } });
  const runDir = path.resolve(o.out ?? (sections.out ? path.resolve(configDir, sections.out) : path.join("runs", cfg.trainer)));
  const generation = resolveGeneration(sections.generation);
  if (generation && cfg.trainer !== "grpo") throw new TrainConfigError('config: "generation" applies to GRPO only', { code: "CONFIG_INVALID", details: { field: "generation" } });
  // Reward names and rewardWeights are checked before any model loads.
  let rewardsResolved: RewardsResolved | null = null;
  if (cfg.trainer === "grpo") {
    if (!sections.rewards) throw new TrainConfigError('GRPO config: "rewards" section is required', { code: "CONFIG_INVALID", details: { field: "rewards" } });
    const { config: rc, baseDir } = resolveRewardConfig(sections.rewards, configDir);
    const names = await rewardNames(rc, baseDir);
    const base = Object.fromEntries(rc.rewards.map((e, i) => [names[i], e.weight ?? 1]));
    rewardsResolved = { rc, baseDir, weights: resolveRewardWeights((cfg as GRPOConfig).rewardWeights, names, base) };
  }
  // One writer per run folder: a second `rarl train` into RUN_DIR is refused naming this process's PID.
  return withOutputLock(runDir, () => trainInto(o, { configDir, sections, cfg, runDir, generation, rewardsResolved }), { command: "rarl train" });
}

/** Reward config, its folder and the resolved weights per reward name (checked before the model loads). */
type RewardsResolved = { rc: RewardConfig; baseDir: string; weights: Record<string, number> };

/** runTrain's work once it holds the lock of RUN_DIR. */
async function trainInto(
  o: RunTrainOptions,
  {
    configDir,
    sections,
    cfg,
    runDir,
    generation,
    rewardsResolved,
  }: {
    configDir: string;
    sections: TrainFileSections & { out?: string };
    cfg: TrainConfig;
    runDir: string;
    generation: ReturnType<typeof resolveGeneration>;
    rewardsResolved: RewardsResolved | null;
  },
): Promise<TrainResult> {
  prepareRunDir(runDir, o);
  await initBackend();

  const { limit, split, ...loadOpts } = sections.data;
  const dataPath = path.resolve(configDir, loadOpts.path);
  const stream = loadDataset({ ...(loadOpts as Parameters<typeof loadDataset>[0]), path: dataPath, root: loadOpts.root ? path.resolve(configDir, String(loadOpts.root)) : undefined });
  let examples = await stream.toArray();
  if (split) examples = examples.filter((s) => s.split === split);
  if (limit) examples = examples.slice(0, limit);
  if (examples.length === 0) throw new TrainConfigError(`data: no samples in ${dataPath}${split ? ` (split ${split})` : ""}`, { code: "CONFIG_INVALID", details: { field: "data" } });
  const root = stream.root ?? path.dirname(dataPath);

  const factory = POLICY_FACTORIES[sections.model.type];
  if (!factory) {
    throw new TrainConfigError(`model.type "${sections.model.type}" is not available (known: ${Object.keys(POLICY_FACTORIES).join(", ")})`, { code: "CONFIG_INVALID", details: { field: "model.type" } });
  }
  const sampler = new TemplateSampler(templatesFrom(sections.prompts?.templates), { seed: cfg.seed, weights: sections.prompts?.weights });
  const buildP = (s: Sample, epoch: number) => ({ messages: buildPrompt(s, sampler.assign(epoch, s.id), { system: sections.prompts?.system }), sample: s, root });
  const checkPrompts = (maxPositions: number, encode: (t: string) => number[] | Promise<number[]>) =>
    checkPromptLengths(examples, {
      maxPositions,
      maxCompletionLength: cfg.maxCompletionLength,
      // the longest rendering over the templates any epoch may draw for the sample
      render: (s) => sampler.templates.map((t) => promptText(buildPrompt(s, t, { system: sections.prompts?.system }))).reduce((a, b) => (b.length > a.length ? b : a), ""),
      encode,
      origin: (id) => stream.originOf(id),
    });
  // Prompt lengths: before the model loads where the folder tells the limit, else once the policy is built.
  const limits = PROMPT_LIMITS[sections.model.type]?.(sections.model, { configDir });
  if (limits) await checkPrompts(limits.maxPositions, limits.encode);
  const built = await factory(sections.model, { configDir, cfg });
  if (!limits && built.maxPositions !== undefined && built.policy.encode) {
    const encode = built.policy.encode.bind(built.policy);
    try {
      await checkPrompts(built.maxPositions, encode);
    } catch (e) {
      built.dispose();
      throw e;
    }
  }

  let rewardSet: RewardSet | null = null;
  try {
    fs.mkdirSync(runDir, { recursive: true });
    writeFileAtomic(path.join(runDir, "config.json"), `${JSON.stringify({ ...o.config, ...cfg }, null, 2)}\n`);
    log.info("train", { trainer: cfg.trainer, runDir, examples: examples.length });
    if (cfg.trainer === "grpo" && rewardsResolved) {
      rewardSet = await buildRewards(rewardsResolved.rc, { baseDir: rewardsResolved.baseDir });
      const grpo = cfg as GRPOConfig;
      const backend = generation
        ? new VllmBackend({
            baseUrl: generation.baseUrl,
            model: generation.model,
            syncEvery: generation.syncEvery,
            adapterDir: generation.adapterDir ? path.resolve(configDir, generation.adapterDir) : undefined,
            maxRetries: generation.maxRetries,
            retryBackoffMs: generation.retryBackoffMs,
            timeoutMs: generation.timeoutMs,
          })
        : undefined;
      const t = new GRPOTrainer({
        config: { ...grpo, rewardWeights: rewardsResolved.weights },
        policy: built.policy,
        examples,
        buildPrompt: buildP,
        rewards: compositeScorer(rewardSet),
        backend,
        runDir,
      });
      return await t.train({ resume: o.resume, onStep: o.onStep, handleSigint: o.handleSigint });
    }
    const t = new SFTTrainer({ config: cfg as SFTConfig, policy: built.policy, examples, buildPrompt: buildP, runDir });
    return await t.train({ resume: o.resume, onStep: o.onStep, handleSigint: o.handleSigint });
  } finally {
    rewardSet?.dispose();
    built.dispose();
  }
}
