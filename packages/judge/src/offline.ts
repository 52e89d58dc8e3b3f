import { initBackend } from "@rarl/core";
import { accuracyReward, BertScorer, canonicalYesNo, lexicalF1, normalizeAnswer, reasoningReward, type RewardSample, type TextSimilarity } from "@rarl/rewards";
import type { PredictionRecord, Verdict } from "./types";

/** Options of the offline judge (judge name "offline"; not an LLM judge). */
export interface OfflineJudgeOptions {
  /**
   * Similarity at or above which an open answer (or a reasoning) counts as correct. Default 0.5, which suits
   * the default lexical F1; raise it for raw BERTScore F1, whose unrelated-text floor is high. The paper has no
   * value (it uses LLM judges).
   */
  threshold?: number;
  /**
   * Similarity scorer for open answers and reasoning: @rarl/rewards' BERTScore scorer when you have an encoder,
   * else the default @rarl/rewards `lexicalF1` (token F1; no model needed).
   */
  similarity?: TextSimilarity;
  /**
   * Hugging Face encoder folder (config.json, model.safetensors, tokenizer.json) for @rarl/rewards' BERTScore
   * (`BertScorer.fromFolder`, tfjs backend started with @rarl/core's initBackend). Used when `similarity` is
   * not given. Default: none (lexical F1).
   */
  encoderDir?: string;
}

/** Resolves the similarity scorer of the offline judge (loads BERTScore once when `encoderDir` is set). */
export function offlineSimilarity(opts: OfflineJudgeOptions): () => Promise<TextSimilarity> {
  if (opts.similarity) {
    const s = opts.similarity;
    return async () => s;
  }
  if (!opts.encoderDir) return async () => lexicalF1;
  let p: Promise<TextSimilarity> | undefined;
  const dir = opts.encoderDir;
  return () => {
    p ??= (async () => {
      await initBackend();
      return BertScorer.fromFolder(dir);
    })();
    return p;
  };
}

/** A question is "closed" when its reference is a yes/no answer of at most two words (VQA-RAD/SLAKE convention). Pure. */
export function isClosed(reference: string): boolean {
  return canonicalYesNo(reference) !== null && normalizeAnswer(reference).split(" ").length <= 2;
}

/**
 * Offline verdict through @rarl/rewards (not an LLM judge): closed questions by its normalised
 * yes/no / exact match (`accuracyReward`, closed), open ones by normalised exact match or
 * similarity >= threshold (`accuracyReward`, open). Reasoning (only when the sample has reference
 * reasoning) by `reasoningReward` >= threshold; null otherwise.
 */
export async function offlineVerdict(s: PredictionRecord, opts: OfflineJudgeOptions = {}): Promise<Verdict> {
  const similarity = opts.similarity ?? lexicalF1;
  const threshold = opts.threshold ?? 0.5;
  const ctx = { similarity };
  const closed = isClosed(s.reference);
  const base: RewardSample = { id: s.id, answer: s.reference, reasoning: s.reference_reasoning ?? null, answer_type: "closed" };
  const exact = await accuracyReward(s.prediction, base, ctx);
  let predictionScore: 0 | 1;
  let why: string;
  if (closed) {
    predictionScore = exact >= 1 ? 1 : 0;
    why = `closed question, normalised match ${predictionScore}`;
  } else if (exact >= 1) {
    predictionScore = 1;
    why = "open question, normalised exact match";
  } else {
    const sim = await accuracyReward(s.prediction, { ...base, answer_type: "open" }, ctx);
    predictionScore = sim >= threshold ? 1 : 0;
    why = `open question, ${similarity.name} ${sim.toFixed(3)} vs threshold ${threshold}`;
  }
  let reasoningScore: 0 | 1 | null = null;
  if (s.reference_reasoning?.trim()) {
    const sim = s.prediction_reasoning?.trim() ? await reasoningReward(`<think>${s.prediction_reasoning}</think>`, base, ctx) : 0;
    reasoningScore = sim >= threshold ? 1 : 0;
    why += `; reasoning ${similarity.name} ${sim.toFixed(3)}`;
  }
  return { evaluation: `offline (not an LLM judge): ${why}`, reasoning_score: reasoningScore, prediction_score: predictionScore };
}
