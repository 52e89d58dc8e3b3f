/** One line of a predictions JSONL file. */
export interface PredictionRecord {
  /** Unique sample id (string or number, compared as a string). */
  id: string;
  /** Dataset name, e.g. "Ours", "VQA-RAD". Used to group reports. */
  dataset: string;
  question: string;
  /** Ground-truth final answer. */
  reference: string;
  /** The model's final answer. */
  prediction: string;
  /** Ground-truth reasoning; when absent only the final prediction is scored (reasoning_score null). */
  reference_reasoning?: string;
  /** The model's reasoning (the <think> part), if it produced one. */
  prediction_reasoning?: string;
}

/** A judge verdict as produced by the judge (validated). */
export interface Verdict {
  evaluation: string;
  reasoning_score: 0 | 1 | null;
  prediction_score: 0 | 1;
}

/** One line of a results JSONL file. */
export interface ResultRecord {
  id: string;
  dataset: string;
  /** Judge name, e.g. "openai:gpt-4o-mini", "gemini:gemini-1.5-flash", "offline". */
  judge: string;
  /** 0/1, or null when the sample has no reference reasoning or the judgement failed. */
  reasoning_score: 0 | 1 | null;
  /** 0/1, or null when the judgement failed. */
  prediction_score: 0 | 1 | null;
  evaluation: string;
  status: "scored" | "failed";
  /** Why the sample failed (only when status is "failed"). */
  error?: string;
  /** Prompt version the verdict was produced with. */
  prompt_version?: string;
  /** True when the verdict came from the cache (no request was made). */
  cached?: boolean;
}

/** Token usage of one or more requests. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

/** A chat message sent to a judge. */
export interface ChatMessage {
  role: "user" | "assistant";
  content: string;
}
