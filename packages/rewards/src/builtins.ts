import { NoEncoderError, RewardConfigError } from "./errors";
import { factCount, factsSimilarity, sampleFacts } from "./facts";
import { canonicalYesNo, expandReference, isYesNoReference, matchChoice, normalizeAnswer } from "./normalize";
import { extractAnswer, extractThink, hasAnyTag, parseExactFormat } from "./tags";
import type { RewardContext, RewardDefinition, RewardSample, TextSimilarity } from "./types";

/** Clamps to [0, 1]; NaN -> 0. */
export function clamp01(x: number): number {
  return Number.isNaN(x) ? 0 : Math.min(1, Math.max(0, x));
}

/** Replaces lone UTF-16 surrogates with U+FFFD, so native tokenizers always get well-formed text. */
export function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}

/**
 * Format reward (RARL §2.2.2).
 * - **1.0**: the completion is exactly `<think>T</think><answer>A</answer>`: each of the four tags occurs exactly once,
 *   in that order, with only whitespace before `<think>`, between `</think>` and `<answer>`, and after `</answer>`
 *   (T and A may be anything without tags, also empty).
 * - **0.1** ("partial"): not 1.0, but at least one of the four tag strings `<think>`, `</think>`, `<answer>`,
 *   `</answer>` occurs (e.g. only one block, an unclosed tag, text outside the blocks, repeated or nested tags,
 *   blocks in the wrong order).
 * - **0**: none of the four tags occurs.
 * Tags match exactly and case-sensitively (`<THINK>` is not a tag).
 */
export function formatReward(completion: string): number {
  if (parseExactFormat(completion)) return 1;
  return hasAnyTag(completion) ? 0.1 : 0;
}

/** Length reward (RARL §2.2.2): min(0.001 × completion tokens, 1), tokens counted with the policy model's tokenizer. */
export async function lengthReward(completion: string, _sample: RewardSample, ctx: RewardContext): Promise<number> {
  if (!ctx.tokenizer)
    throw new RewardConfigError("reward \"length\" needs a tokenizer (config `tokenizer`: the policy model's tokenizer.json)", {
      code: "REWARD_NO_TOKENIZER",
    });
  const n = await ctx.tokenizer.countTokens(wellFormed(completion));
  return clamp01(0.001 * n);
}

async function bestSimilarity(sim: TextSimilarity, candidate: string, references: string[]): Promise<number> {
  if (references.length === 0) return 0;
  const scores = await sim.score(
    references.map(() => candidate),
    references,
  );
  return clamp01(Math.max(...scores.map(clamp01)));
}

function exactMatch(pred: string, refs: string[]): boolean {
  const p = normalizeAnswer(pred);
  const pyn = canonicalYesNo(pred);
  return refs.some((r) => {
    if (isYesNoReference(r)) return pyn === canonicalYesNo(r);
    return p.length > 0 && p === normalizeAnswer(r);
  });
}

/**
 * Accuracy reward (RARL §2.2.2). The predicted answer is `extractAnswer(completion)`: the content of the last
 * `<answer>…</answer>` block, else (no `<answer>` tag) the whole completion minus `<think>…</think>` blocks.
 * The reference is expanded VQA-Med-2019 style (`#` alternatives, optional `(…)` parts; best over expansions).
 * - `closed`: 1/0. A yes/no reference (a single yes/no word, see isYesNoReference) matches a prediction with the
 *   same yes/no meaning (YES_WORDS / NO_WORDS); other references need normalised equality (case, punctuation,
 *   articles, accents ignored).
 * - `choice`: 1/0. The prediction and the reference are each mapped to an option (letter "B", "(b)", "B. text", or
 *   the option text); equal options score 1. A reference that names no option falls back to normalised equality.
 * - `open`: BERTScore F1 (ctx.similarity) between prediction and reference, max over expansions, clamped to [0, 1].
 *   No ctx.similarity -> NoEncoderError.
 */
export async function accuracyReward(completion: string, sample: RewardSample, ctx: RewardContext): Promise<number> {
  const pred = extractAnswer(wellFormed(completion));
  const refs = expandReference(wellFormed(String(sample.answer ?? "")));
  if (sample.answer_type === "choice" && Array.isArray(sample.choices) && sample.choices.length > 0) {
    const choices = sample.choices.map((c) => wellFormed(String(c)));
    const refIdx = refs.map((r) => matchChoice(r, choices)).filter((i): i is number => i !== null);
    if (refIdx.length > 0) {
      const p = matchChoice(pred, choices);
      return p !== null && refIdx.includes(p) ? 1 : 0;
    }
    return exactMatch(pred, refs) ? 1 : 0;
  }
  if (sample.answer_type === "closed" || sample.answer_type === "choice") return exactMatch(pred, refs) ? 1 : 0;
  if (!ctx.similarity)
    throw new NoEncoderError(
      'reward "accuracy" on an open question needs a similarity scorer: set `encoder` (a BERT/RoBERTa folder) or `"scorer": "lexical-f1"`',
      { code: "REWARD_NO_ENCODER", details: { sample: sample.id } },
    );
  return bestSimilarity(ctx.similarity, pred, refs);
}

/**
 * Reasoning-aware reward (RARL §2.2.2): similarity (BERTScore F1 by default; ctx.reasoningSimilarity, else
 * ctx.similarity) of the `<think>` content (first `<think>…</think>` pair, trimmed) to the sample's reference
 * reasoning, clamped to [0, 1]. With the structured-facts scorer (`factsSimilarity`) and a sample that has
 * ground-truth fields (`modality`, `extra.lesion/side/lesion_size`), the share of those facts the `<think>` states
 * correctly. 0 when the completion has no non-empty `<think>…</think>` or the sample has no
 * reference reasoning. No scorer -> NoEncoderError.
 */
export async function reasoningReward(completion: string, sample: RewardSample, ctx: RewardContext): Promise<number> {
  const think = extractThink(wellFormed(completion));
  const ref = typeof sample.reasoning === "string" ? wellFormed(sample.reasoning).trim() : "";
  if (!think || ref.length === 0) return 0;
  const sim = ctx.reasoningSimilarity ?? ctx.similarity;
  if (sim && "scoreAgainst" in sim && sim === factsSimilarity) {
    // structured facts: against the sample's ground-truth fields when it has them, else the reference text's facts
    const truth = sampleFacts(sample);
    if (factCount(truth) > 0) return clamp01(factsSimilarity.scoreAgainst(think, truth) ?? 0);
  }
  if (!sim)
    throw new NoEncoderError('reward "reasoning" needs a similarity scorer: set `encoder` (a BERT/RoBERTa folder) or `"scorer": "lexical-f1"`', {
      code: "REWARD_NO_ENCODER",
      details: { sample: sample.id },
    });
  return bestSimilarity(sim, think, [ref]);
}

/** The built-in rewards, by name: format, length, accuracy, reasoning. */
export const BUILTIN_REWARDS: readonly RewardDefinition[] = [
  { name: "format", fn: formatReward, description: "1 for <think>…</think><answer>…</answer>, 0.1 partial tags, 0 none" },
  { name: "length", fn: lengthReward, description: "min(0.001 × tokens, 1)" },
  { name: "accuracy", fn: accuracyReward, description: "1/0 for closed and choice, BERTScore F1 for open" },
  { name: "reasoning", fn: reasoningReward, description: "BERTScore F1 of <think> vs the reference reasoning" },
];
