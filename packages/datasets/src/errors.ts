import { RarlError } from "@rarl/core";

/** Stable codes of {@link DatasetError}. */
export type DatasetErrorCode =
  /** A row lacks a required field (details.field). */
  | "DATASET_MISSING_FIELD"
  /** A field has the wrong type or an invalid value (details.field). */
  | "DATASET_BAD_FIELD"
  /** A row is not parseable at all (bad JSON line, wrong column count). */
  | "DATASET_BAD_ROW"
  /** Two rows share an id (details.id, details.firstRow). */
  | "DATASET_DUPLICATE_ID"
  /** The image file does not exist (details.image). */
  | "DATASET_MISSING_IMAGE"
  /** The image exists but cannot be decoded (details.image). */
  | "DATASET_UNREADABLE_IMAGE"
  /** An image path is absolute or escapes the dataset root with `..` (details.image). */
  | "DATASET_PATH_ESCAPE"
  /** A whole file is missing or unparseable; never skippable. */
  | "DATASET_BAD_FILE"
  /** Bad options (unknown format, bad split sizes, ...). */
  | "DATASET_BAD_OPTIONS";

/**
 * Every bad-input error of @rarl/datasets. The message starts with `<file>, row <n>:` when a row is
 * involved; `details.file` and `details.row` carry the same for programs.
 */
export class DatasetError extends RarlError {
  declare readonly code: DatasetErrorCode;
  readonly file?: string;
  readonly row?: number;

  constructor(
    message: string,
    options: { code: DatasetErrorCode; file?: string; row?: number; details?: Record<string, unknown>; cause?: unknown },
  ) {
    const where = options.file !== undefined ? `${options.file}${options.row !== undefined ? `, row ${options.row}` : ""}: ` : "";
    super(`${where}${message}`, {
      code: options.code,
      details: { file: options.file, row: options.row, ...(options.details ?? {}) },
      cause: options.cause,
    });
    this.file = options.file;
    this.row = options.row;
  }
}

/** True for row-level errors that `onError: "skip"` may skip (file-level and option errors always throw). */
export function isSkippable(e: unknown): e is DatasetError {
  return e instanceof DatasetError && e.code !== "DATASET_BAD_FILE" && e.code !== "DATASET_BAD_OPTIONS";
}
