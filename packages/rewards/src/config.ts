import fs from "node:fs";
import path from "node:path";
import { initBackend } from "@rarl/core";
import Ajv, { type ErrorObject } from "ajv";
import { BertScorer } from "./bertscore/bertscore";
import { CompositeReward } from "./composite";
import { RewardConfigError } from "./errors";
import { factsSimilarity } from "./facts";
import { lexicalF1 } from "./lexical";
import { RewardRegistry } from "./registry";
import { loadTokenCounter } from "./tokenizer";
import type { RewardContext } from "./types";

/** One entry of a rewards config's `rewards` list. */
export interface RewardEntryConfig {
  /**
   * Which reward: a built-in name (`format`, `length`, `accuracy`, `reasoning`), a name registered in the registry
   * passed to buildRewards, an npm package name (e.g. `@acme/rarl-reward-x`, resolved from the config's folder, then
   * the current directory), or a path to a module (relative to the config's folder). Required.
   */
  use: string;
  /** Weight in the composite sum. Default 1 (the paper sums its components unweighted). */
  weight?: number;
  /** Name of the component in the output (default: the reward's own name). Needed to use one reward twice. */
  name?: string;
}

/** A rewards config (`rarl reward --config rewards.json`). Unknown keys are errors. */
export interface RewardConfig {
  /** The components of the composite reward. Required, at least one. */
  rewards: RewardEntryConfig[];
  /**
   * BERTScore encoder: a local Hugging Face BERT/RoBERTa folder (config.json + model.safetensors + tokenizer.json),
   * relative to the config's folder. Needed by `accuracy` on open questions and by `reasoning`, unless
   * `scorer` is "lexical-f1". No default (the paper uses BERTScore; its encoder is not named).
   */
  encoder?: string;
  /** The policy model's tokenizer.json (for `length`), relative to the config's folder. Required when `length` is used. */
  tokenizer?: string;
  /**
   * Similarity scorer: "bertscore" (needs `encoder`; default), "lexical-f1" (token F1, no model; only when named here)
   * or "structured-facts" (modality / lesion / side / size parsed from the texts and compared, `factsSimilarity`; the
   * reasoning reward compares the `<think>` with the sample's ground-truth fields when it has them; no model). Not in
   * the paper (it uses BERTScore); TRL has no equivalent.
   */
  scorer?: "bertscore" | "lexical-f1" | "structured-facts";
  /** BERTScore layer (0 = embeddings ... numLayers = last). Default: last. */
  layer?: number;
  /** BERTScore idf weighting over the references being scored (answers for accuracy, reasonings for reasoning). Default false. */
  idf?: boolean;
  /** BERTScore baseline rescaling values {P, R, F}. Default: none (no rescaling). */
  baseline?: { P: number; R: number; F: number };
  /** Sequences per BERTScore encoder call. Default 64. */
  batchSize?: number;
  /** Most `async: true` reward calls (e.g. LLM judges) in flight. Default 4. */
  concurrency?: number;
}

/** JSON schema of RewardConfig (ajv). */
export const REWARD_CONFIG_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["rewards"],
  properties: {
    rewards: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        additionalProperties: false,
        required: ["use"],
        properties: {
          use: { type: "string", minLength: 1 },
          weight: { type: "number" },
          name: { type: "string", minLength: 1 },
        },
      },
    },
    encoder: { type: "string", minLength: 1 },
    tokenizer: { type: "string", minLength: 1 },
    scorer: { enum: ["bertscore", "lexical-f1", "structured-facts"] },
    layer: { type: "integer", minimum: 0 },
    idf: { type: "boolean" },
    baseline: {
      type: "object",
      additionalProperties: false,
      required: ["P", "R", "F"],
      properties: { P: { type: "number", exclusiveMaximum: 1 }, R: { type: "number", exclusiveMaximum: 1 }, F: { type: "number", exclusiveMaximum: 1 } },
    },
    batchSize: { type: "integer", minimum: 1 },
    concurrency: { type: "integer", minimum: 1 },
  },
} as const;

const ajv = new Ajv({ allErrors: true, strict: true });
const validateFn = ajv.compile(REWARD_CONFIG_SCHEMA);

/** Formats an ajv error path "/rewards/0/wieght" as "rewards[0].wieght". */
export function jsonPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split("/").filter(Boolean);
  if (extra !== undefined) parts.push(extra);
  let out = "";
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || "(root)";
}

function describeError(e: ErrorObject): string {
  if (e.keyword === "additionalProperties") return `${jsonPath(e.instancePath, String(e.params.additionalProperty))}: unknown key`;
  if (e.keyword === "required") return `${jsonPath(e.instancePath, String(e.params.missingProperty))}: required`;
  if (e.keyword === "enum") return `${jsonPath(e.instancePath)}: must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}`;
  return `${jsonPath(e.instancePath)}: ${e.message}`;
}

/** Validates a parsed rewards config; RewardConfigError listing every problem with its path otherwise. */
export function validateRewardConfig(json: unknown, source = "<config>"): RewardConfig {
  if (!validateFn(json)) {
    const problems = (validateFn.errors ?? []).map(describeError);
    throw new RewardConfigError(`${source}: invalid rewards config: ${problems.join("; ")}`, {
      code: "REWARD_CONFIG_INVALID",
      details: { file: source, errors: problems },
    });
  }
  const cfg = json as RewardConfig;
  if (cfg.scorer === "lexical-f1" && cfg.encoder)
    throw new RewardConfigError(`${source}: "scorer": "lexical-f1" and "encoder" are both set; choose one`, {
      code: "REWARD_CONFIG_INVALID",
      details: { file: source, field: "scorer" },
    });
  return cfg;
}

/** Reads and validates a rewards config file. Returns it with the folder that relative paths resolve against. */
export function loadRewardConfig(file: string): { config: RewardConfig; baseDir: string } {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, "utf8");
  } catch (e) {
    throw new RewardConfigError(`${abs}: cannot read rewards config: ${(e as Error).message}`, { code: "REWARD_CONFIG_IO", details: { file: abs }, cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RewardConfigError(`${abs}: invalid JSON: ${(e as Error).message}`, { code: "REWARD_CONFIG_INVALID", details: { file: abs }, cause: e });
  }
  return { config: validateRewardConfig(json, abs), baseDir: path.dirname(abs) };
}

/**
 * The rewards section of a training config: a path to a rewards JSON file (resolved against `configDir`) or the
 * config inline (validated under `source`). Returns it with the folder its relative paths resolve against.
 */
export function resolveRewardConfig(spec: unknown, configDir: string, source = "config.rewards"): { config: RewardConfig; baseDir: string } {
  if (typeof spec === "string") return loadRewardConfig(path.resolve(configDir, spec));
  return { config: validateRewardConfig(spec, source), baseDir: configDir };
}

/** Options of buildRewards. */
export interface BuildRewardsOptions {
  /** Folder that relative paths and plugin names resolve from. Default: the current directory. */
  baseDir?: string;
  /** Registry to resolve names in (default: a fresh one with the built-ins). */
  registry?: RewardRegistry;
  /** idf corpora (used only with `idf: true`): reference answers and reference reasonings. */
  idfCorpus?: { answers?: string[]; reasonings?: string[] };
}

/** A composite reward ready to score, with its context. Call `dispose()` to free the encoder. */
export interface RewardSet {
  composite: CompositeReward;
  ctx: RewardContext;
  dispose(): void;
}

/**
 * Builds the composite reward and its context from a config: resolves every `use` (built-ins, registry, plugins),
 * loads the tokenizer and the BERTScore encoder. A config that uses `length` without `tokenizer`, or names
 * `"scorer": "bertscore"` without `encoder`, is a RewardConfigError. Without an encoder (and without
 * "lexical-f1"), open-question accuracy and reasoning throw NoEncoderError when they need a scorer.
 */
export async function buildRewards(config: RewardConfig, opts: BuildRewardsOptions = {}): Promise<RewardSet> {
  const baseDir = opts.baseDir ?? process.cwd();
  const registry = opts.registry ?? new RewardRegistry();
  const components = [];
  for (const [i, e] of config.rewards.entries()) {
    const reward = await registry.resolve(e.use, baseDir).catch((err) => {
      throw new RewardConfigError(`rewards[${i}].use: ${(err as Error).message}`, { code: (err as any).code ?? "REWARD_CONFIG", details: { field: `rewards[${i}].use`, plugin: e.use }, cause: err });
    });
    components.push({ reward, weight: e.weight ?? 1, name: e.name });
  }
  const composite = new CompositeReward(components, { concurrency: config.concurrency });
  const ctx: RewardContext = {};
  const uses = new Set(components.map((c) => c.reward.name));
  if (config.tokenizer) ctx.tokenizer = loadTokenCounter(path.resolve(baseDir, config.tokenizer));
  else if (uses.has("length"))
    throw new RewardConfigError('reward "length" needs `tokenizer` (the policy model\'s tokenizer.json) in the rewards config', {
      code: "REWARD_NO_TOKENIZER",
      details: { field: "tokenizer" },
    });
  let dispose = () => {};
  if (config.scorer === "lexical-f1") ctx.similarity = lexicalF1;
  else if (config.scorer === "structured-facts") ctx.similarity = factsSimilarity;
  else if (config.encoder) {
    await initBackend();
    const bopts = { layer: config.layer, baseline: config.baseline, batchSize: config.batchSize };
    const acc = await BertScorer.fromFolder(path.resolve(baseDir, config.encoder), {
      ...bopts,
      idfCorpus: config.idf ? (opts.idfCorpus?.answers ?? []) : undefined,
    });
    ctx.similarity = acc;
    ctx.reasoningSimilarity = config.idf ? await BertScorer.create(acc.encoder, acc.tokenizer, { ...bopts, idfCorpus: opts.idfCorpus?.reasonings ?? [] }) : acc;
    dispose = () => acc.dispose();
  } else if (config.scorer === "bertscore")
    throw new RewardConfigError('"scorer": "bertscore" needs `encoder` (a local BERT/RoBERTa folder)', { code: "REWARD_NO_ENCODER", details: { field: "encoder" } });
  return { composite, ctx, dispose };
}
