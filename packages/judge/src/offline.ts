import { initBackend } from "@rarl/core";
import {
  accuracyReward,
  BertScorer,
  factAgreement,
  isYesNoReference,
  lexicalF1,
  parseFacts,
  type RewardSample,
  reasoningReward,
  type TextSimilarity,
} from "@rarl/rewards";
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
  /**
   * Structured facts (default true): when the reference answer (or reasoning) states findings @rarl/rewards'
   * `parseFacts` can read (modality, lesion or not, patient side, lesion size), the prediction (or the predicted
   * reasoning) is correct only when it states every one of them with the same value; the similarity is used only for
   * references without such facts. So "small lesion in the right lung" is wrong against "large lesion in the left
   * lung" (token F1 0.8 would have passed it).
   */
  facts?: boolean;
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

/**
 * A question is "closed" when its reference is a yes/no answer: a single yes/no word (@rarl/rewards'
 * `isYesNoReference`). "No abnormality" is an open answer (a finding), not "no". Pure.
 */
export function isClosed(reference: string): boolean {
  return isYesNoReference(reference);
}

/**
 * Offline verdict through @rarl/rewards (not an LLM judge): closed questions by its normalised
 * yes/no / exact match (`accuracyReward`, closed), open ones by normalised exact match, else (option `facts`,
 * default on) by structured facts when the reference states any (all must agree), else similarity >= threshold
 * (`accuracyReward`, open). Reasoning (only when the sample has reference reasoning): all the reference reasoning's
 * structured facts stated alike, or (no facts) `reasoningReward` >= threshold; null otherwise.
 */
export async function offlineVerdict(s: PredictionRecord, opts: OfflineJudgeOptions = {}): Promise<Verdict> {
  const similarity = opts.similarity ?? lexicalF1;
  const threshold = opts.threshold ?? 0.5;
  const ctx = { similarity };
  const closed = isClosed(s.reference);
  const useFacts = opts.facts ?? true;
  const factsOf = (t: string) => {
    const f = parseFacts(t);
    const n = Object.values(f).filter((v) => v !== undefined && v !== "conflict").length;
    return n > 0 ? { facts: f, n } : null;
  };
  const fmt = (a: number, n: number) => `${Math.round(a * n)}/${n}`;
  const refFacts = factsOf(s.reference);
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
  } else if (useFacts && refFacts !== null) {
    const a = factAgreement(parseFacts(s.prediction), refFacts.facts) ?? 0;
    predictionScore = a >= 1 ? 1 : 0;
    why = `open question, structured facts ${fmt(a, refFacts.n)}`;
  } else {
    const sim = await accuracyReward(s.prediction, { ...base, answer_type: "open" }, ctx);
    predictionScore = sim >= threshold ? 1 : 0;
    why = `open question, ${similarity.name} ${sim.toFixed(3)} vs threshold ${threshold}`;
  }
  let reasoningScore: 0 | 1 | null = null;
  const refReasoningFacts = useFacts && s.reference_reasoning?.trim() ? factsOf(s.reference_reasoning) : null;
  if (refReasoningFacts !== null) {
    const a = s.prediction_reasoning?.trim() ? (factAgreement(parseFacts(s.prediction_reasoning), refReasoningFacts.facts) ?? 0) : 0;
    reasoningScore = a >= 1 ? 1 : 0;
    why += `; reasoning structured facts ${fmt(a, refReasoningFacts.n)}`;
  } else if (s.reference_reasoning?.trim()) {
    const sim = s.prediction_reasoning?.trim() ? await reasoningReward(`<think>${s.prediction_reasoning}</think>`, base, ctx) : 0;
    reasoningScore = sim >= threshold ? 1 : 0;
    why += `; reasoning ${similarity.name} ${sim.toFixed(3)}`;
  }
  return { evaluation: `offline (not an LLM judge): ${why}`, reasoning_score: reasoningScore, prediction_score: predictionScore };
}
