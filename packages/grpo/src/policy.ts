import type { Rng } from "@rarl/core";
import type * as tf from "@tensorflow/tfjs-core";

/** Why a completion ended. "length" means it was cut at maxCompletionLength (truncated). */
export type FinishReason = "eos" | "stop" | "length";

/** One sampled completion. */
export interface Completion {
  /** Completion token ids (without the prompt). These are what the loss is computed on. */
  ids: number[];
  /** Decoded text, scored by the rewards. */
  text: string;
  finishReason: FinishReason;
  /** Per-token log-probs from the sampler, when it returns them (informational; the loss recomputes them). */
  logprobs?: number[];
}

/** Sampling parameters of one generate call. */
export interface SamplingOptions {
  numSamples: number;
  maxNewTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  repetitionPenalty: number;
  /** The run's sampling RNG; a backend that samples locally must draw only from it (exact resume). */
  rng: Rng;
}

/**
 * A prompt prepared once per example: tokenised, with its image features computed once and reused for the
 * G samples and for every log-prob pass of this step. Opaque to the trainer apart from these fields.
 */
export interface PreparedPrompt {
  /** Prompt token ids (image placeholders expanded). */
  promptIds: number[];
  /** Rendered prompt text (chat template applied), for remote backends. */
  promptText?: string;
  /** Encoded image bytes, for remote backends. */
  image?: Uint8Array;
  /** MIME type of `image` (default "image/png"). */
  imageMime?: string;
  /** The prompt as OpenAI chat messages (for remote backends with images); text parts only, the image is added from `image`. */
  chatMessages?: Array<{ role: string; content: string }>;
}

/**
 * What the trainers need of a model: the minimal surface that both @rarl/model (through an adapter) and a toy
 * tfjs policy satisfy.
 */
export interface Policy<P = unknown, H extends PreparedPrompt = PreparedPrompt> {
  /** The variables the optimiser updates (LoRA weights, or all LM weights for full SFT). Names must be unique. */
  trainableVariables(): tf.Variable[];
  /**
   * Stable names of the trainable variables (parallel to trainableVariables()), used as checkpoint keys, so a
   * new process (whose tfjs variable names may carry instance suffixes) can resume. Default: the variables' names.
   */
  trainableNames?(): string[];
  /** Tokenise `prompt` and compute its vision features once. */
  prepare(prompt: P): Promise<H> | H;
  /** Frees what `prepare` allocated (image features). */
  release(prepared: H): void;
  /** Samples `opts.numSamples` completions of one prepared prompt (sharing one prefill where the model can). */
  generate(prepared: H, opts: SamplingOptions): Promise<Completion[]>;
  /**
   * Teacher-forced per-token log-probs, [B, T]: row b holds log p(completion_b[t] | prompt_b, completion_b[<t]) for
   * t < length_b, anything (masked) beyond. Differentiable w.r.t. trainableVariables(); the caller owns the result.
   * `temperature` divides the logits first (TRL scores completions with the sampling temperature). Default 1.
   */
  completionLogprobs(items: Array<{ prepared: H; completionIds: number[] }>, T: number, temperature?: number): tf.Tensor2D;
  /**
   * {@link completionLogprobs} plus the per-token entropy of the same (temperature-scaled) next-token distributions,
   * [B, T], computed in the same chunked lm_head pass (no second pass); the entropy carries no gradient. Optional:
   * needed for `topEntropyQuantile` < 1 and the `entropy` metric.
   */
  completionLogprobsWithEntropy?(items: Array<{ prepared: H; completionIds: number[] }>, T: number, temperature?: number): { logp: tf.Tensor2D; entropy: tf.Tensor2D };
  /** Runs `fn` with the adapter switched off (the reference policy, no second copy of the weights). */
  withAdapterDisabled<T>(fn: () => T): T;
  /** Writes the trainable weights in the policy's deployable format (PEFT adapter dir for LoRA). */
  saveAdapter(dir: string): void;
  /**
   * Turns activation checkpointing of the model's layers on or off for the differentiated log-prob passes (config
   * `gradientCheckpointing`); optional (policies without layers to checkpoint omit it). Values and gradients are
   * unchanged by it.
   */
  setGradientCheckpointing?(on: boolean): void;
  /** Number of tokens of text (for length metrics in SFT targets); optional. */
  encode?(text: string): number[] | Promise<number[]>;
}

/** Where completions come from. The local policy is the default; a remote server (vLLM) is the other. */
export interface GenerationBackend<H extends PreparedPrompt = PreparedPrompt> {
  readonly name: string;
  generate(prepared: H, opts: SamplingOptions): Promise<Completion[]>;
  /**
   * Called after each optimizer update so the backend samples from the current weights (`force`: sync now whatever
   * the backend's sync interval; the trainer does so when it resumes from a checkpoint).
   */
  syncWeights?(policy: Policy<unknown, H>, step: number, force?: boolean): Promise<void>;
}

/** The default backend: sample with the policy itself. */
export function localBackend<H extends PreparedPrompt>(policy: Policy<unknown, H>): GenerationBackend<H> {
  return { name: "local", generate: (p, o) => policy.generate(p, o) };
}

/** One reward call's input: a completion and the example it answers. */
export interface RewardInput<E> {
  completion: string;
  completionIds: number[];
  example: E;
}

/**
 * Scores completions: returns one array per reward component (same order as `items`). NaN means "not
 * applicable" and counts as 0 in the total (TRL's nansum). May be async (remote judges, BERTScore).
 */
export type RewardScorer<E> = (items: RewardInput<E>[]) => Promise<Record<string, number[]>> | Record<string, number[]>;
