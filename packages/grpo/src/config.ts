import { TrainConfigError } from "./errors";
import type { LossType } from "./math/loss";
import type { ScaleRewards } from "./math/advantages";
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
  /** Log sample completions with their rewards every N steps (0: never). Default 10. */
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
  /** Lower clip ε of the ratio. Default 0.2 (TRL). Paper: ε, value not stated. */
  epsilon: number;
  /** Upper clip ε_high (DAPO's clip-higher); null = same as epsilon. Default null. */
  epsilonHigh: number | null;
  /** KL coefficient β (eq. 1). Default 0.04 (the DeepSeekMath/GRPO value and TRL's former default). Paper: β, value not stated. */
  beta: number;
  /** Advantage scaling: "group" (eq. 2), "batch", or "none" (Dr. GRPO). Default "group". */
  scaleRewards: ScaleRewards;
  /** Loss aggregation: "grpo" | "bnpo" | "dr_grpo" (TRL semantics). Default "grpo" (eq. 1's per-sequence mean). */
  lossType: LossType;
  /** Give zero weight to completions cut at maxCompletionLength (no EOS). Default false. */
  maskTruncatedCompletions: boolean;
  /** Max new tokens per completion. Default 256 (TRL). */
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
  /** Weight of each reward component in the total (missing names weigh 1). Default {} (all 1). Paper: equal sum. */
  rewardWeights: Record<string, number>;
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
  beta: 0.04,
  scaleRewards: "group",
  lossType: "grpo",
  maskTruncatedCompletions: false,
  maxCompletionLength: 256,
  temperature: 1.0,
  topP: 1.0,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1.0,
  rewardWeights: {},
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
const oneOf =
  (...vals: unknown[]): Check =>
  (v) =>
    vals.includes(v) ? null : `one of ${vals.map((x) => JSON.stringify(x)).join(", ")}`;
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
  epsilonHigh: (v) => (v === null ? null : num(0)(v)),
  beta: num(0),
  scaleRewards: oneOf("group", "batch", "none"),
  lossType: oneOf("grpo", "bnpo", "dr_grpo"),
  maskTruncatedCompletions: bool,
  maxCompletionLength: num(1, Number.POSITIVE_INFINITY, true),
  temperature: num(0, Number.POSITIVE_INFINITY, false, true),
  topP: num(0, 1, false, true),
  topK: num(0, Number.POSITIVE_INFINITY, true),
  minP: num(0, 1),
  repetitionPenalty: num(0, Number.POSITIVE_INFINITY, false, true),
  backwardBatchSize: num(0, Number.POSITIVE_INFINITY, true),
  rewardWeights: (v) =>
    v && typeof v === "object" && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "number" && Number.isFinite(x))
      ? null
      : "an object of finite numbers",
};

const SFT_CHECKS: Record<Exclude<keyof SFTConfig, keyof CommonTrainConfig>, Check> = {
  trainer: oneOf("sft"),
  finetune: oneOf("lora", "full"),
  batchSize: num(1, Number.POSITIVE_INFINITY, true),
  maxCompletionLength: num(1, Number.POSITIVE_INFINITY, true),
};

function resolve<T>(input: Record<string, unknown>, defaults: T, checks: Record<string, Check>, label: string, extraKeys: readonly string[]): T {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [k, v] of Object.entries(input)) {
    if (extraKeys.includes(k)) continue;
    const check = checks[k];
    if (!check) {
      throw new TrainConfigError(`${label}: unknown field "${k}"`, { code: "CONFIG_UNKNOWN_FIELD", details: { field: k } });
    }
    if (v === undefined) continue;
    const err = check(v);
    if (err) throw new TrainConfigError(`${label}: field "${k}" must be ${err}, got ${JSON.stringify(v)}`, { code: "CONFIG_INVALID", details: { field: k, value: v } });
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
  if (trainer === "grpo") return resolve(input, GRPO_DEFAULTS, { ...COMMON_CHECKS, ...GRPO_CHECKS }, "GRPO config", extraKeys);
  if (trainer === "sft") return resolve(input, SFT_DEFAULTS, { ...COMMON_CHECKS, ...SFT_CHECKS }, "SFT config", extraKeys);
  throw new TrainConfigError(`config field "trainer" must be "grpo" or "sft", got ${JSON.stringify(trainer)}`, { code: "CONFIG_INVALID", details: { field: "trainer" } });
}
