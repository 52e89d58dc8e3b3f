/** How a sample's answer is judged: yes/no style (closed), free text (open) or one of `choices` (choice). */
export type AnswerType = "closed" | "open" | "choice";

/**
 * A sample's image: either a file path relative to the dataset root (never absolute, never escaping
 * the root with `..`), or the encoded image bytes (PNG/JPEG/...) embedded in the dataset (parquet).
 */
export type SampleImage = { path: string } | { bytes: Uint8Array };

/** The common sample every loader yields (validated against {@link sampleJsonSchema}). */
export interface Sample {
  /** Unique within one loaded dataset (duplicates are an error). */
  id: string;
  /** The image the question is about. */
  image: SampleImage;
  /** The question, as published. */
  question: string;
  /** The short reference answer ("Yes", "left", "(A)"...). Empty only for question-only test files, flagged `extra.unanswered`. */
  answer: string;
  /** Optional reference explanation (the RARL reasoning set's "reasoning answer"), without `<think>` tags. */
  reasoning?: string;
  /** closed | open | choice. */
  answer_type: AnswerType;
  /** Options for `choice` questions, in order (option A first). */
  choices?: string[];
  /** Imaging modality ("MRI", "CT", "X-ray", ...) when the dataset gives one. */
  modality?: string;
  /** Dataset name ("rarl", "vqa-rad", "slake", ...). */
  source: string;
  /** Split name ("train", "validation", "test") when the dataset gives one. */
  split?: string;
  /** Dataset-specific fields kept verbatim (organ, question_type, alternatives...). JSON-serialisable. */
  extra?: Record<string, unknown>;
}

/** A row that was skipped under `onError: "skip"`, with the reason. */
export interface SkippedRow {
  /** The file the row came from. */
  file: string;
  /** 1-based record number in that file (line for text formats, element for JSON arrays, row for parquet). */
  row: number;
  /** The error code (see DatasetErrorCode). */
  code: string;
  /** Human-readable reason (the error's message). */
  reason: string;
}
