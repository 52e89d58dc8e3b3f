import type { Judge } from "./judge";
import type { PredictionRecord } from "./types";

/** The sample fields the judge reward reads (a superset of a dataset sample is fine). */
export interface JudgeRewardSample {
  id?: string | number;
  dataset?: string;
  /** The question (optional: @rarl/rewards' RewardSample has none; the judge then sees an empty question). */
  question?: string;
  /** Reference final answer (`answer` or `reference`). */
  answer?: string;
  reference?: string;
  /** Reference reasoning (`reasoning` or `reference_reasoning`); without it only the answer is scored. */
  reasoning?: string | null;
  reference_reasoning?: string | null;
}

/** Options of {@link judgeReward}. */
export interface JudgeRewardOptions {
  /** Weight of prediction_score. Default 1. */
  predictionWeight?: number;
  /** Weight of reasoning_score (applied only when the sample has reference reasoning). Default 1. */
  reasoningWeight?: number;
  /** Reward when the judgement failed. Default 0. */
  failedValue?: number;
}

/** Splits a completion into its <think> reasoning and <answer> (the whole text when there is no tag). Pure. */
export function splitCompletion(completion: string): { reasoning?: string; answer: string } {
  const think = /<think>([\s\S]*?)<\/think>/i.exec(completion);
  const ans = /<answer>([\s\S]*?)<\/answer>/i.exec(completion);
  const answer = ans ? ans[1].trim() : completion.replace(/<think>[\s\S]*?<\/think>/i, "").trim();
  return { reasoning: think ? think[1].trim() : undefined, answer };
}

/**
 * Judge-as-reward: an async reward `(completion, sample, ctx) => Promise<number>` for GRPO,
 * structurally compatible with @rarl/rewards' async reward type. Returns
 * predictionWeight * prediction_score + reasoningWeight * reasoning_score (reasoning term only when the
 * sample has reference reasoning), or failedValue when the judgement failed. Uses the judge's cache,
 * retries and concurrency bound.
 */
export function judgeReward(judge: Judge, opts: JudgeRewardOptions = {}) {
  const pw = opts.predictionWeight ?? 1;
  const rw = opts.reasoningWeight ?? 1;
  const failed = opts.failedValue ?? 0;
  let counter = 0;
  return async (completion: string, sample: JudgeRewardSample, _ctx?: unknown): Promise<number> => {
    const { reasoning, answer } = splitCompletion(completion);
    const record: PredictionRecord = {
      id: String(sample.id ?? `reward-${counter++}`),
      dataset: sample.dataset ?? "train",
      question: sample.question ?? "",
      reference: sample.reference ?? sample.answer ?? "",
      prediction: answer,
    };
    const refReasoning = sample.reference_reasoning ?? sample.reasoning;
    if (refReasoning) record.reference_reasoning = refReasoning;
    if (reasoning) record.prediction_reasoning = reasoning;
    const o = await judge.judge(record);
    if (o.status !== "scored" || !o.verdict) return failed;
    return pw * o.verdict.prediction_score + (o.verdict.reasoning_score === null ? 0 : rw * o.verdict.reasoning_score);
  };
}

/**
 * The judge reward as a named reward definition (structurally a @rarl/rewards `RewardDefinition`),
 * marked `async` so a composite runs it with bounded concurrency. Default name "judge".
 */
export function judgeRewardDefinition(judge: Judge, opts: JudgeRewardOptions & { name?: string } = {}) {
  return {
    name: opts.name ?? "judge",
    fn: judgeReward(judge, opts),
    async: true as const,
    description: `LLM-as-judge reward (${judge.name}, prompt ${judge.promptVersion})`,
  };
}
