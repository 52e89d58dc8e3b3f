import fs from "node:fs";
import path from "node:path";
import { getLogger, initBackend } from "@rarl/core";
import { imageInput, loadDataset, type Sample } from "@rarl/datasets";
import { loadQwen2VL } from "@rarl/model";
import { BUILTIN_TEMPLATES, buildPrompt, type ChatMessage, TemplateSampler, TRAINING_TEMPLATES, type Template } from "@rarl/prompts";
import { buildRewards, type RewardConfig, type RewardSet, resolveRewardConfig } from "@rarl/rewards";
import { type GRPOConfig, resolveTrainConfig, type SFTConfig, type TrainConfig } from "./config";
import { TrainConfigError } from "./errors";
import { GRPOTrainer } from "./grpo-trainer";
import type { TrainResult } from "./loop";
import type { Policy, PreparedPrompt, RewardScorer } from "./policy";
import { SFTTrainer } from "./sft-trainer";
import { QwenFullPolicy } from "./qwen-full";
import { QwenPolicy, type QwenLoraOptions } from "./qwen-policy";
import { ToyPolicy } from "./testing/toy-policy";

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
  /** Passed to the trainer (tests). */
  onStep?: (record: Record<string, unknown>) => void;
  handleSigint?: boolean;
}

const SECTIONS = ["model", "data", "prompts", "rewards", "out"] as const;

/** A policy built from a config's `model` section; `dispose` frees it. */
export interface BuiltPolicy {
  policy: Policy<{ messages: ChatMessage[]; sample: Sample; root: string }, PreparedPrompt>;
  dispose(): void;
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
      withAdapterDisabled: (fn) => q.withAdapterDisabled(fn),
      saveAdapter: (dir) => q.saveAdapter(dir),
      // SFT targets end with the end-of-turn token, as the chat template would write them.
      encode: async (text) => [...(await q.encode(text)), processor?.tokenizer.specialIds.imEnd ?? 151645],
    };
    return {
      policy,
      dispose: () => {
        q.dispose();
        model.dispose();
      },
    };
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
 * trainer into RUN_DIR (metrics.jsonl, samples.jsonl, checkpoints/, adapter/).
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
  const built = await factory(sections.model, { configDir, cfg });
  const sampler = new TemplateSampler(templatesFrom(sections.prompts?.templates), { seed: cfg.seed, weights: sections.prompts?.weights });
  const buildP = (s: Sample, epoch: number) => ({ messages: buildPrompt(s, sampler.assign(epoch, s.id), { system: sections.prompts?.system }), sample: s, root });

  let rewardSet: RewardSet | null = null;
  try {
    fs.mkdirSync(runDir, { recursive: true });
    fs.writeFileSync(path.join(runDir, "config.json"), `${JSON.stringify({ ...o.config, ...cfg }, null, 2)}\n`);
    log.info("train", { trainer: cfg.trainer, runDir, examples: examples.length });
    if (cfg.trainer === "grpo") {
      if (!sections.rewards) throw new TrainConfigError('GRPO config: "rewards" section is required', { code: "CONFIG_INVALID", details: { field: "rewards" } });
      const { config: rc, baseDir } = resolveRewardConfig(sections.rewards, configDir);
      rewardSet = await buildRewards(rc, { baseDir });
      const grpo = cfg as GRPOConfig;
      const weights = { ...Object.fromEntries(rewardSet.composite.components.map((c) => [c.name, c.weight])), ...grpo.rewardWeights };
      const t = new GRPOTrainer({ config: { ...grpo, rewardWeights: weights }, policy: built.policy, examples, buildPrompt: buildP, rewards: compositeScorer(rewardSet), runDir });
      return await t.train({ resume: o.resume, onStep: o.onStep, handleSigint: o.handleSigint });
    }
    const t = new SFTTrainer({ config: cfg as SFTConfig, policy: built.policy, examples, buildPrompt: buildP, runDir });
    return await t.train({ resume: o.resume, onStep: o.onStep, handleSigint: o.handleSigint });
  } finally {
    rewardSet?.dispose();
    built.dispose();
  }
}
