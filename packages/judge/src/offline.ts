import type { PredictionRecord, Verdict } from "./types";

/**
 * What the offline judge needs from @rarl/rewards: answer normalisation and a similarity score
 * (BERTScore F1) between a candidate and a reference. Pass your own to use another metric.
 */
export interface OfflineScorer {
  /** Normalises an answer for exact matching (lower-case, punctuation/articles/whitespace removed...). */
  normalize(text: string): string;
  /** Similarity in [0, 1] of candidate vs reference (BERTScore F1 in the default scorer). */
  similarity(candidate: string, reference: string): Promise<number>;
  /** Name of the similarity metric, written into each verdict's evaluation. */
  metric: string;
}

/** Options of the offline judge. */
export interface OfflineJudgeOptions {
  /** Similarity at or above which an open answer (or a reasoning) counts as correct. Default 0.5 (no paper value: the paper uses LLM judges). */
  threshold?: number;
  /** Normalisation + similarity. Default: {@link defaultOfflineScorer} (token F1 until a BERTScore scorer is passed). */
  scorer?: OfflineScorer;
}

/** SQuAD-style normalisation: lower-case, drop punctuation, articles and extra whitespace. Pure. */
export function normalizeAnswer(text: string): string {
  return text
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^\p{L}\p{N}\s]/gu, " ")
    .replace(/\b(a|an|the)\b/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

/** Token-level F1 of two normalised strings (SQuAD metric). Pure. */
export function tokenF1(candidate: string, reference: string): number {
  const c = normalizeAnswer(candidate).split(" ").filter(Boolean);
  const r = normalizeAnswer(reference).split(" ").filter(Boolean);
  if (c.length === 0 || r.length === 0) return c.length === r.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of r) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of c) {
    const n = counts.get(t) ?? 0;
    if (n > 0) {
      common++;
      counts.set(t, n - 1);
    }
  }
  if (common === 0) return 0;
  const p = common / c.length;
  const rec = common / r.length;
  return (2 * p * rec) / (p + rec);
}

/** Scorer without a model: SQuAD normalisation and token F1. Used when no BERTScore scorer is given. */
export const defaultOfflineScorer: OfflineScorer = {
  normalize: normalizeAnswer,
  similarity: async (c, r) => tokenF1(c, r),
  metric: "token-F1",
};

const YES_NO = new Set(["yes", "no"]);

/** A question is "closed" when its normalised reference is yes or no (VQA-RAD/SLAKE convention). Pure. */
export function isClosed(reference: string, normalize: (s: string) => string = normalizeAnswer): boolean {
  return YES_NO.has(normalize(reference));
}

/**
 * Offline verdict (not an LLM judge): closed questions by normalised match (the prediction's
 * leading yes/no counts), open ones by similarity >= threshold (exact normalised match always
 * counts). Reasoning is scored only when both reference and predicted reasoning exist.
 */
export async function offlineVerdict(s: PredictionRecord, opts: OfflineJudgeOptions = {}): Promise<Verdict> {
  const scorer = opts.scorer ?? defaultOfflineScorer;
  const threshold = opts.threshold ?? 0.5;
  const ref = scorer.normalize(s.reference);
  const pred = scorer.normalize(s.prediction);
  let predictionScore: 0 | 1;
  let why: string;
  if (isClosed(s.reference, scorer.normalize)) {
    const first = pred.split(" ")[0] ?? "";
    predictionScore = pred === ref || first === ref ? 1 : 0;
    why = `closed question: normalised answer "${first}" vs "${ref}"`;
  } else if (pred === ref) {
    predictionScore = 1;
    why = "open question: normalised exact match";
  } else {
    const sim = await scorer.similarity(s.prediction, s.reference);
    predictionScore = sim >= threshold ? 1 : 0;
    why = `open question: ${scorer.metric} ${sim.toFixed(3)} vs threshold ${threshold}`;
  }
  let reasoningScore: 0 | 1 | null = null;
  if (s.reference_reasoning?.trim()) {
    if (s.prediction_reasoning?.trim()) {
      const sim = await scorer.similarity(s.prediction_reasoning, s.reference_reasoning);
      reasoningScore = sim >= threshold ? 1 : 0;
      why += `; reasoning ${scorer.metric} ${sim.toFixed(3)}`;
    } else {
      reasoningScore = 0;
      why += "; no predicted reasoning";
    }
  }
  return { evaluation: `offline (not an LLM judge): ${why}`, reasoning_score: reasoningScore, prediction_score: predictionScore };
}
