/** The kind of reference answer: yes/no (closed), multiple choice, or free text (open). */
export type AnswerType = "closed" | "open" | "choice";

/** What a reward may know about the sample a completion answers (a subset of @rarl/datasets' common schema). */
export interface RewardSample {
  /** Sample id (named in plugin errors). */
  id: string;
  /** Reference answer. VQA-Med 2019 style alternatives `a#b` and optional parts `(x)` are understood by `accuracy`. */
  answer: string;
  /** Reference reasoning (for the reasoning-aware reward). Absent: that reward gives 0. */
  reasoning?: string | null;
  answer_type: AnswerType;
  /** Option texts of a multiple-choice question, lettered A, B, C, ... */
  choices?: string[] | null;
  /** Imaging modality (ground truth; read by the structured-facts reasoning reward). */
  modality?: string | null;
  /** Dataset extras; `lesion`, `side`, `lesion_size` (as written by `rarl data synth`) are read by the structured-facts reasoning reward. */
  extra?: Record<string, unknown> | null;
}

/** Counts tokens with the policy model's tokenizer (no special tokens added). */
export interface TokenCounter {
  countTokens(text: string): number | Promise<number>;
}

/** A text-similarity scorer: one value per (candidate, reference) pair, normally in [0, 1] (BERTScore F1). */
export interface TextSimilarity {
  /** Name for logs, e.g. "bertscore" or "lexical-f1". */
  readonly name: string;
  score(candidates: string[], references: string[]): Promise<number[]>;
}

/** Everything a reward may use besides the completion and the sample. */
export interface RewardContext {
  /** The policy model's tokenizer (length reward). */
  tokenizer?: TokenCounter;
  /** Similarity used by `accuracy` for open questions (BERTScore F1 by default). */
  similarity?: TextSimilarity;
  /** Similarity used by `reasoning`. Default: `similarity`. */
  reasoningSimilarity?: TextSimilarity;
  /** Free-form extras for plugins (API clients, caches...). */
  extras?: Record<string, unknown>;
}

/**
 * A reward: (completion text, sample, context) -> a number in [0, 1]. Built-ins are total: any string gives a number.
 * May return a Promise (e.g. BERTScore, an LLM judge).
 */
export type RewardFn = (completion: string, sample: RewardSample, ctx: RewardContext) => number | Promise<number>;

/** A named reward, as registered in a RewardRegistry or exported by a plugin package. */
export interface RewardDefinition {
  /** Unique name (a config's `use`). */
  name: string;
  fn: RewardFn;
  /**
   * True for rewards that call slow external services (LLM judge, HTTP): they run with bounded concurrency
   * (the composite's `concurrency`). Default false.
   */
  async?: boolean;
  /** One-line description. */
  description?: string;
}
