import type { PredictionRecord } from "./types";

/**
 * The LLM-as-judge evaluation prompt of the RARL paper (Appendix B), verbatim in its task, scoring
 * and output-structure parts, followed by the sample. Placeholders: `{{question}}`,
 * `{{ground_truth}}`, `{{prediction}}`, `{{note}}` (empty, or the prediction-only instruction).
 */
export const APPENDIX_B_PROMPT = `Task:
You are given a question, a ground truth, and a prediction in medical analysis. Evaluate the model prediction for its relevance, accuracy, and alignment with the ground truth.
Reasoning Scoring: if the reasoning of the prediction is similar to ground truth, returning 1, otherwise returning 0.
Prediction score: if the final prediction is similar to ground truth, returning 1, otherwise returning 0.
Output structure:
{
    "evaluation": Provide a concise justification sentence explaining why you rated the score.
    "reasoning_score": reasoning score
    "prediction_score": prediction score
}
{{note}}
Question: {{question}}
Ground truth:
{{ground_truth}}
Prediction:
{{prediction}}`;

/** Version string of {@link APPENDIX_B_PROMPT}; part of every cache key. Bump it when the text changes. */
export const APPENDIX_B_PROMPT_VERSION = "rarl-appendix-b/v1";

/** Instruction added for samples without reference reasoning (datasets other than the paper's own). */
export const PREDICTION_ONLY_NOTE =
  'There is no reference reasoning for this sample: set "reasoning_score" to null and score only the final prediction.';

/** Sent (after the judge's invalid reply) when the first reply did not validate. `{{reason}}` is replaced. */
export const REPAIR_INSTRUCTION =
  'Your previous reply could not be used: {{reason}}. Reply with only one JSON object of the form {"evaluation": "<one sentence>", "reasoning_score": 0 or 1, "prediction_score": 0 or 1} and nothing else.';

/** A judge prompt: the template and its version (the version goes into the cache key). */
export interface JudgePrompt {
  /** Template with `{{question}}`, `{{ground_truth}}`, `{{prediction}}` and optionally `{{note}}`. Default: {@link APPENDIX_B_PROMPT}. */
  template: string;
  /** Version string; change it whenever the template changes so cached verdicts are not reused. Default: {@link APPENDIX_B_PROMPT_VERSION}. */
  version: string;
}

/** The paper's prompt (Appendix B). */
export const DEFAULT_PROMPT: JudgePrompt = { template: APPENDIX_B_PROMPT, version: APPENDIX_B_PROMPT_VERSION };

/** Whether the sample carries reference reasoning (so its reasoning is scored). */
export function hasReferenceReasoning(s: PredictionRecord): boolean {
  return typeof s.reference_reasoning === "string" && s.reference_reasoning.trim().length > 0;
}

/** Renders the judge prompt for one sample. Pure. */
export function renderPrompt(s: PredictionRecord, prompt: JudgePrompt = DEFAULT_PROMPT): string {
  const withReasoning = hasReferenceReasoning(s);
  const groundTruth = withReasoning
    ? `Reasoning: ${s.reference_reasoning}\nFinal answer: ${s.reference}`
    : `Final answer: ${s.reference}`;
  const prediction =
    typeof s.prediction_reasoning === "string" && s.prediction_reasoning.trim().length > 0
      ? `Reasoning: ${s.prediction_reasoning}\nFinal answer: ${s.prediction}`
      : `Final answer: ${s.prediction}`;
  const values: Record<string, string> = {
    question: s.question,
    ground_truth: groundTruth,
    prediction,
    note: withReasoning ? "" : PREDICTION_ONLY_NOTE,
    reference: s.reference,
    reference_reasoning: s.reference_reasoning ?? "",
    prediction_reasoning: s.prediction_reasoning ?? "",
    prediction_answer: s.prediction,
  };
  return prompt.template.replace(/\{\{(\w+)\}\}/g, (m, k: string) => (k in values ? values[k] : m));
}

/** Renders the repair instruction. Pure. */
export function renderRepair(reason: string): string {
  return REPAIR_INSTRUCTION.replace("{{reason}}", reason);
}
