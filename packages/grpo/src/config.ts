import { closestName, getLogger } from "@rarl/core";
import { TrainConfigError } from "./errors";
import type { MultiObjectiveAggregation, ScaleRewards } from "./math/advantages";
import { IMPORTANCE_SAMPLING_LEVELS, type ImportanceSamplingLevel, LOSS_TYPES, type LossType, VLLM_IS_MODES, type VllmImportanceSamplingMode } from "./math/loss";
import type { LrSchedulerType } from "./optim/schedule";

/**
 * Options shared by the GRPO and SFT trainers. Defaults follow TRL/transformers where the paper is silent;
 * "Paper" gives the RARL paper's value where it states one (§2.3: LoRA r = 8, α = 16 on q/k/v/o, vision tower frozen,
 * 5 epochs, a checkpoint every 100 steps).
 */
export interface CommonTrainConfig {
  /** Seed of every RNG of the run (sampling, data order, LoRA init, template choice). Default 0. */
  seed: number;
  /** Peak learning rate. Default 1e-5 (TRL GRPO: 1e-6, SFT: 2e-5). Paper: not stated. */
  learningRate: number;
  /** Schedule after warmup: "linear" | "cosine" | "constant". Default "linear" (transformers). Paper: not stated. */
  lrScheduler: LrSchedulerType;
  /** Warmup as a fraction of the total steps (ceil). Default 0. Paper: not stated. */
  warmupRatio: number;
  /** Warmup in steps; overrides warmupRatio when > 0. Default 0. */
  warmupSteps: number;
  /** AdamW decoupled weight decay. Default 0 (transformers). Paper: not stated. */
  weightDecay: number;
  /** AdamW β1. Default 0.9. */
  adamBeta1: number;
  /** AdamW β2. Default 0.999. */
  adamBeta2: number;
  /** AdamW ε. Default 1e-8. */
  adamEpsilon: number;
  /** Global-norm gradient clipping; 0 disables. Default 1.0 (transformers). */
  maxGradNorm: number;
  /** Micro-batches summed into one optimizer update. Default 1. */
  gradientAccumulationSteps: number;
  /** Passes over the training set. Default 5. Paper: 5. */
  numEpochs: number;
  /** Stop after this many trainer steps (overrides numEpochs when > 0). Default -1 (use numEpochs). */
  maxSteps: number;
  /** Write a checkpoint every N steps (and always at the end). Default 100. Paper: 100. */
  saveSteps: number;
  /** Keep only the newest K checkpoints. Default 3. */
  saveTotalLimit: number;
  /**
   * Log sample completions with their rewards every N steps (0: never) to samples.jsonl; with `logCompletions`, every
   * completion of those steps goes to completions.jsonl too. Default 10. Paper: not stated. (TRL logs at logging_steps.)
   */
  logCompletionsSteps: number;
  /** Show a progress bar with ETA on stderr. Default true. */
  progress: boolean;
  /**
   * Activation (gradient) checkpointing of every decoder layer in the training forward pass (transformers'
   * `gradient_checkpointing`): the tape keeps each layer's input instead of its intermediates, and the backward pass
   * recomputes each layer once more. Same loss and gradients (float32 rounding). On the bench config
   * (bench/RESULTS.md, real wasm buffer bytes) one completion's forward+backward peaks 121 MB above the resident
   * weights instead of 785 MB, for about +25-35% of that pass's time (a second forward pass of the decoder).
   * Default true, as TRL's trainer configs (`_BaseConfig`; transformers' TrainingArguments: false): on the wasm
   * backend memory is the binding limit (a ~4 GB heap). Paper: not stated. Policies without decoder layers (toy
   * policies) ignore it.
   */
  gradientCheckpointing: boolean;
}

/** GRPO trainer config (field names follow TRL's GRPOConfig in camelCase). */
export interface GRPOConfig extends CommonTrainConfig {
  trainer: "grpo";
  /** G, completions sampled per prompt. Default 8 (TRL). Paper: not stated. */
  numGenerations: number;
  /** Prompts per micro-batch (each yields G completions). Default 1. */
  promptsPerStep: number;
  /**
   * μ: optimizer updates per generation batch. One trainer step = one generation batch followed by μ updates
   * (TRL counts each update as a step). With μ = 1 the old policy is the current one, detached (ratio ≡ 1). Default 1.
   */
  numIterations: number;
  /** Lower clip ε of the ratio (TRL `epsilon`). Default 0.2 (TRL). Paper: ε, value not stated. */
  epsilon: number;
  /**
   * Upper clip ε_high (TRL `epsilon_high`; DAPO's clip-higher, DAPO: 0.28); null = same as epsilon. With
   * lossType "cispo" it is the absolute cap ε_max of the ratio and is required (ScaleRL: 5.0). Default null. Paper: not used.
   */
  epsilonHigh: number | null;
  /**
   * Two-sided clip δ (TRL `delta`, INTELLECT-2): the unclipped ratio term is capped at δ, which must be
   * > 1 + (epsilonHigh ?? epsilon). null = off. Ignored by "cispo" (as in TRL). Default null. Paper: not used.
   */
  delta: number | null;
  /** KL coefficient β (TRL `beta`, eq. 1). Default 0.04 (the DeepSeekMath/GRPO value and TRL's former default; TRL now 0). Paper: β, value not stated. */
  beta: number;
  /** Advantage scaling (TRL `scale_rewards`): "group" (eq. 2), "batch", or "none" (Dr. GRPO). Default "group". Paper: group (eq. 2). */
  scaleRewards: ScaleRewards;
  /**
   * Surrogate and normaliser (TRL `loss_type`): "grpo" (per-sequence mean, eq. 1), "bnpo" (per-token mean of the
   * micro-batch), "dr_grpo" (÷ B·maxCompletionLength), "dapo" (÷ completion tokens of the whole generation batch,
   * across gradient accumulation), "cispo" (−min(ratio, epsilonHigh).detach()·A·logp, normalised like dapo).
   * Default "grpo" (TRL's default is now "dapo"). Paper: grpo (eq. 1).
   */
  lossType: LossType;
  /**
   * Where the importance weight lives (TRL `importance_sampling_level`): "token", or "sequence" (GSPO: exp of the
   * masked mean log-ratio of each sequence). Default "token". Paper: token (eq. 1).
   */
  importanceSamplingLevel: ImportanceSamplingLevel;
  /**
   * ρ of "Beyond the 80/20 rule" (TRL `top_entropy_quantile`): the policy term keeps only completion tokens whose
   * entropy is in the top ρ quantile of each micro-batch (with backwardBatchSize splitting it, one extra forward pass
   * without gradient finds the whole micro-batch's quantile), in (0, 1]. Default 1 (all tokens). Paper: not used (the
   * 80/20 paper: 0.2).
   */
  topEntropyQuantile: number;
  /**
   * How several rewards become advantages (TRL `multi_objective_aggregation`): "sum_then_normalize" (weighted sum,
   * then scaleRewards) or "normalize_then_sum" (GDPO: each reward normalised within its group, weighted sum, then
   * normalised over the batch; scaleRewards is not used). Default "sum_then_normalize". Paper: sum_then_normalize (eq. 2 on the summed reward).
   */
  multiObjectiveAggregation: MultiObjectiveAggregation;
  /** Give zero weight to completions cut at maxCompletionLength (no EOS) (TRL `mask_truncated_completions`). Default false. Paper: not stated. */
  maskTruncatedCompletions: boolean;
  /** Max new tokens per completion (TRL `max_completion_length`). Default 256 (TRL). Paper: not stated. */
  maxCompletionLength: number;
  /** Sampling temperature. Default 1.0 (TRL). */
  temperature: number;
  /** Nucleus sampling; 1 disables. Default 1.0. */
  topP: number;
  /** Top-k sampling; 0 disables. Default 0. */
  topK: number;
  /** Min-p sampling; 0 disables. Default 0. */
  minP: number;
  /** Repetition penalty; 1 disables. Default 1.0. */
  repetitionPenalty: number;
  /**
   * Weight of each reward (TRL `reward_weights`): an object by reward name (names must be the rewards section's;
   * missing names keep the section's weight, else 1), or TRL's list, one weight per reward in the section's order.
   * Default {} (all 1). Paper: equal sum.
   */
  rewardWeights: Record<string, number> | number[];
  /**
   * Write every completion of a logging step (prompt, completion, each reward, advantage) to completions.jsonl, shown
   * as a table by `rarl report` (TRL `log_completions`). Default false (TRL). Paper: not stated.
   */
  logCompletions: boolean;
  /**
   * With generation.backend "vllm": correct for the gap between the server's sampling log-probs and the trainer's
   * (TRL `vllm_importance_sampling_correction`). Default true (TRL). Paper: not used.
   */
  vllmImportanceSamplingCorrection: boolean;
  /**
   * How that correction is formed (TRL `vllm_importance_sampling_mode`): "token_truncate" | "token_mask" |
   * "sequence_truncate" | "sequence_mask". Default "sequence_mask" (TRL). Paper: not used.
   */
  vllmImportanceSamplingMode: VllmImportanceSamplingMode;
  /** Upper bound C_max of the correction ratio (TRL `vllm_importance_sampling_clip_max`, formerly `_cap`); null = none. Default 3.0 (TRL). Paper: not used. */
  vllmImportanceSamplingClipMax: number | null;
  /** Lower bound C_min of the correction ratio (TRL `vllm_importance_sampling_clip_min`), below the maximum; null = none. Default null (TRL). Paper: not used. */
  vllmImportanceSamplingClipMin: number | null;
  /**
   * Deprecated alias of vllmImportanceSamplingClipMax (TRL `vllm_importance_sampling_cap`, deprecated there too): when
   * set it replaces the maximum, as TRL does, with a warning. Default null. Paper: not used.
   */
  vllmImportanceSamplingCap: number | null;
  /**
   * Completions per forward/backward pass of the loss (0 = all promptsPerStep × G at once). Smaller values cap the
   * activation memory; the chunk gradients are summed with whole-batch normalisers, so the update is the same. Default 0.
   */
  backwardBatchSize: number;
}

/** SFT (the paper's baseline) config: LoRA or full fine-tuning on `<think>…</think><answer>…</answer>` targets. */
export interface SFTConfig extends CommonTrainConfig {
  trainer: "sft";
  /**
   * "lora" trains only the LoRA weights; "full" trains every language-model weight (decoder Linear weights and biases,
   * RMSNorm weights) except the token embedding / lm_head; the vision tower stays frozen. Default "lora" (the paper's
   * SFT baseline uses LoRA).
   */
  finetune: "lora" | "full";
  /** Examples per micro-batch. Default 1. */
  batchSize: number;
  /** Truncate target completions to this many tokens. Default 512. */
  maxCompletionLength: number;
}

export type TrainConfig = GRPOConfig | SFTConfig;

const COMMON_DEFAULTS: CommonTrainConfig = {
  seed: 0,
  learningRate: 1e-5,
  lrScheduler: "linear",
  warmupRatio: 0,
  warmupSteps: 0,
  weightDecay: 0,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEpsilon: 1e-8,
  maxGradNorm: 1.0,
  gradientAccumulationSteps: 1,
  numEpochs: 5,
  maxSteps: -1,
  saveSteps: 100,
  saveTotalLimit: 3,
  logCompletionsSteps: 10,
  progress: true,
  gradientCheckpointing: true,
};

export const GRPO_DEFAULTS: GRPOConfig = {
  ...COMMON_DEFAULTS,
  trainer: "grpo",
  numGenerations: 8,
  promptsPerStep: 1,
  numIterations: 1,
  epsilon: 0.2,
  epsilonHigh: null,
  delta: null,
  beta: 0.04,
  scaleRewards: "group",
  lossType: "grpo",
  importanceSamplingLevel: "token",
  topEntropyQuantile: 1,
  multiObjectiveAggregation: "sum_then_normalize",
  maskTruncatedCompletions: false,
  maxCompletionLength: 256,
  temperature: 1.0,
  topP: 1.0,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1.0,
  rewardWeights: {},
  logCompletions: false,
  vllmImportanceSamplingCorrection: true,
  vllmImportanceSamplingMode: "sequence_mask",
  vllmImportanceSamplingClipMax: 3.0,
  vllmImportanceSamplingClipMin: null,
  vllmImportanceSamplingCap: null,
  backwardBatchSize: 0,
};

export const SFT_DEFAULTS: SFTConfig = {
  ...COMMON_DEFAULTS,
  learningRate: 2e-5,
  trainer: "sft",
  finetune: "lora",
  batchSize: 1,
  maxCompletionLength: 512,
};

type Check = (v: unknown) => string | null;
const num =
  (min: number, max = Number.POSITIVE_INFINITY, int = false, minExclusive = false): Check =>
  (v) =>
    typeof v !== "number" || Number.isNaN(v) || (int && !Number.isInteger(v)) || (minExclusive ? v <= min : v < min) || v > max
      ? `${int ? "an integer" : "a number"} ${minExclusive ? ">" : ">="} ${min}${max < Number.POSITIVE_INFINITY ? ` and <= ${max}` : ""}`
      : null;
/** The closest candidate for a "did you mean" (one rule for every config error: @rarl/core's closestName). */
export { closestName };

const oneOf =
  (...vals: unknown[]): Check =>
  (v) => {
    if (vals.includes(v)) return null;
    const s = typeof v === "string" ? closestName(v, vals.filter((x): x is string => typeof x === "string")) : undefined;
    return `one of ${vals.map((x) => JSON.stringify(x)).join(", ")}${s ? ` (did you mean "${s}"?)` : ""}`;
  };
const nullable =
  (c: Check): Check =>
  (v) =>
    v === null ? null : c(v);
const bool: Check = (v) => (typeof v === "boolean" ? null : "a boolean");

const COMMON_CHECKS: Record<keyof CommonTrainConfig, Check> = {
  seed: num(0, 2 ** 32 - 1, true),
  learningRate: num(0),
  lrScheduler: oneOf("linear", "cosine", "constant"),
  warmupRatio: num(0, 1),
  warmupSteps: num(0, Number.POSITIVE_INFINITY, true),
  weightDecay: num(0),
  adamBeta1: num(0, 0.999999),
  adamBeta2: num(0, 0.999999),
  adamEpsilon: num(0, 1, false, true),
  maxGradNorm: num(0),
  gradientAccumulationSteps: num(1, Number.POSITIVE_INFINITY, true),
  numEpochs: num(0, Number.POSITIVE_INFINITY, false, true),
  maxSteps: (v) => (typeof v === "number" && Number.isInteger(v) && (v === -1 || v > 0) ? null : "-1 or a positive integer"),
  saveSteps: num(1, Number.POSITIVE_INFINITY, true),
  saveTotalLimit: num(1, Number.POSITIVE_INFINITY, true),
  logCompletionsSteps: num(0, Number.POSITIVE_INFINITY, true),
  progress: bool,
  gradientCheckpointing: bool,
};

const GRPO_CHECKS: Record<Exclude<keyof GRPOConfig, keyof CommonTrainConfig>, Check> = {
  trainer: oneOf("grpo"),
  numGenerations: num(2, Number.POSITIVE_INFINITY, true),
  promptsPerStep: num(1, Number.POSITIVE_INFINITY, true),
  numIterations: num(1, Number.POSITIVE_INFINITY, true),
  epsilon: num(0, 1),
  epsilonHigh: nullable(num(0)),
  delta: nullable(num(1, Number.POSITIVE_INFINITY, false, true)),
  beta: num(0),
  scaleRewards: oneOf("group", "batch", "none"),
  lossType: oneOf(...LOSS_TYPES),
  importanceSamplingLevel: oneOf(...IMPORTANCE_SAMPLING_LEVELS),
  topEntropyQuantile: num(0, 1, false, true),
  multiObjectiveAggregation: oneOf("sum_then_normalize", "normalize_then_sum"),
  logCompletions: bool,
  vllmImportanceSamplingCorrection: bool,
  vllmImportanceSamplingMode: oneOf(...VLLM_IS_MODES),
  vllmImportanceSamplingClipMax: nullable(num(0, Number.POSITIVE_INFINITY, false, true)),
  vllmImportanceSamplingClipMin: nullable(num(0)),
  vllmImportanceSamplingCap: nullable(num(0, Number.POSITIVE_INFINITY, false, true)),
  maskTruncatedCompletions: bool,
  maxCompletionLength: num(1, Number.POSITIVE_INFINITY, true),
  temperature: num(0, Number.POSITIVE_INFINITY, false, true),
  topP: num(0, 1, false, true),
  topK: num(0, Number.POSITIVE_INFINITY, true),
  minP: num(0, 1),
  repetitionPenalty: num(0, Number.POSITIVE_INFINITY, false, true),
  backwardBatchSize: num(0, Number.POSITIVE_INFINITY, true),
  rewardWeights: (v) =>
    v && typeof v === "object" && Object.values(v).every((x) => typeof x === "number" && Number.isFinite(x))
      ? null
      : "an object of finite numbers by reward name, or a list of finite numbers (one per reward)",
};

const SFT_CHECKS: Record<Exclude<keyof SFTConfig, keyof CommonTrainConfig>, Check> = {
  trainer: oneOf("sft"),
  finetune: oneOf("lora", "full"),
  batchSize: num(1, Number.POSITIVE_INFINITY, true),
  maxCompletionLength: num(1, Number.POSITIVE_INFINITY, true),
};

/** What to write instead, for the fields whose valid values are not obvious from the range alone. */
const FIELD_HINTS: Record<string, string> = {
  topEntropyQuantile: "use 1 to keep every token, or the share to keep (the 80/20 paper uses 0.2)",
  delta: "use null to turn the two-sided clip off, or a value above 1 + epsilon (INTELLECT-2 uses 4)",
  epsilonHigh: "use null for epsilonHigh = epsilon, 0.28 for DAPO's clip-higher, or 5.0 as cispo's cap",
  vllmImportanceSamplingClipMax: "use null for no upper bound, or TRL's default 3.0",
  vllmImportanceSamplingClipMin: "use null for no lower bound",
};

function resolve<T>(input: Record<string, unknown>, defaults: T, checks: Record<string, Check>, label: string, extraKeys: readonly string[]): T {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [k, v] of Object.entries(input)) {
    if (extraKeys.includes(k)) continue;
    const check = checks[k];
    if (!check) {
      const sug = closestName(k, Object.keys(checks));
      throw new TrainConfigError(`${label}: unknown field "${k}"${sug ? ` (did you mean "${sug}"?)` : ""}`, { code: "CONFIG_UNKNOWN_FIELD", details: { field: k, suggestion: sug } });
    }
    if (v === undefined) continue;
    const err = check(v);
    if (err) {
      const hint = FIELD_HINTS[k];
      throw new TrainConfigError(`${label}: field "${k}" must be ${err}, got ${JSON.stringify(v)}${hint ? `; ${hint}` : ""}`, {
        code: "CONFIG_INVALID",
        details: { field: k, value: v, suggestion: hint },
      });
    }
    out[k] = v;
  }
  return out as T;
}

/**
 * Fills defaults and validates a trainer config (plain JSON). Unknown fields are an error, except those in
 * `extraKeys` (sections other layers own, e.g. "model", "data", "rewards", "prompts"), which are ignored here.
 */
export function resolveTrainConfig(input: Record<string, unknown>, extraKeys: readonly string[] = []): TrainConfig {
  if (!input || typeof input !== "object") throw new TrainConfigError("config must be a JSON object", { code: "CONFIG_INVALID" });
  const trainer = input.trainer ?? "grpo";
  if (trainer === "grpo") return checkGrpoCombinations(resolve(input, GRPO_DEFAULTS, { ...COMMON_CHECKS, ...GRPO_CHECKS }, "GRPO config", extraKeys));
  if (trainer === "sft") return resolve(input, SFT_DEFAULTS, { ...COMMON_CHECKS, ...SFT_CHECKS }, "SFT config", extraKeys);
  throw new TrainConfigError(`config field "trainer" must be "grpo" or "sft", got ${JSON.stringify(trainer)}`, { code: "CONFIG_INVALID", details: { field: "trainer" } });
}

const combo = (field: string, msg: string, suggestion: string) =>
  new TrainConfigError(`GRPO config: field "${field}": ${msg}; ${suggestion}`, { code: "CONFIG_INVALID", details: { field, suggestion } });

/**
 * The checks that involve several GRPO fields (TRL's combinations), run by resolveTrainConfig before any model
 * loads: "cispo" needs epsilonHigh; δ > 1 + (epsilonHigh ?? epsilon); vLLM clip bounds in order.
 */
export function checkGrpoCombinations(cfg: GRPOConfig): GRPOConfig {
  if (cfg.lossType === "cispo" && cfg.epsilonHigh === null) {
    throw combo("epsilonHigh", 'lossType "cispo" needs epsilonHigh, its absolute cap ε_max on the ratio', 'set "epsilonHigh": 5.0 (the ScaleRL value, TRL\'s recommendation)');
  }
  if (cfg.delta !== null && cfg.lossType !== "cispo") {
    const upper = 1 + (cfg.epsilonHigh ?? cfg.epsilon);
    if (!(cfg.delta > upper)) {
      throw combo("delta", `delta ${cfg.delta} must be > 1 + ${cfg.epsilonHigh !== null ? "epsilonHigh" : "epsilon"} = ${upper}`, `set "delta" above ${upper} (INTELLECT-2 uses 4) or null to turn the two-sided clip off`);
    }
  }
  if (cfg.vllmImportanceSamplingCap !== null) {
    getLogger("grpo").warn("vllmImportanceSamplingCap is deprecated (as TRL's vllm_importance_sampling_cap): use vllmImportanceSamplingClipMax", { cap: cfg.vllmImportanceSamplingCap });
    cfg = { ...cfg, vllmImportanceSamplingClipMax: cfg.vllmImportanceSamplingCap };
  }
  if (cfg.vllmImportanceSamplingClipMin !== null && cfg.vllmImportanceSamplingClipMax !== null && cfg.vllmImportanceSamplingClipMin >= cfg.vllmImportanceSamplingClipMax) {
    throw combo("vllmImportanceSamplingClipMin", `${cfg.vllmImportanceSamplingClipMin} must be below vllmImportanceSamplingClipMax ${cfg.vllmImportanceSamplingClipMax}`, "lower it or raise the maximum");
  }
  return cfg;
}

/**
 * Resolves `rewardWeights` against the reward names (in the rewards section's order): an object must name only
 * known rewards, a list must have one weight per reward. Returns the weight of every reward (`base` for those not
 * given, else 1). Throws TrainConfigError naming the field and suggesting the closest name.
 */
export function resolveRewardWeights(weights: Record<string, number> | number[], names: readonly string[], base: Record<string, number> = {}): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(names.map((n) => [n, base[n] ?? 1]));
  if (Array.isArray(weights)) {
    if (weights.length !== names.length) {
      throw new TrainConfigError(`GRPO config: field "rewardWeights" has ${weights.length} weight(s) for ${names.length} reward(s) (${names.join(", ")}); give one per reward in that order, or an object by name`, {
        code: "CONFIG_INVALID",
        details: { field: "rewardWeights", rewards: [...names] },
      });
    }
    names.forEach((n, i) => {
      out[n] = weights[i];
    });
    return out;
  }
  for (const [k, w] of Object.entries(weights)) {
    if (!names.includes(k)) {
      const sug = closestName(k, names);
      throw new TrainConfigError(`GRPO config: field "rewardWeights.${k}" names no reward (rewards: ${names.join(", ")})${sug ? `; did you mean "${sug}"?` : ""}`, {
        code: "CONFIG_INVALID",
        details: { field: `rewardWeights.${k}`, suggestion: sug, rewards: [...names] },
      });
    }
    out[k] = w;
  }
  return out;
}
