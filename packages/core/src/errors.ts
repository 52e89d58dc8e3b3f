/**
 * Base class for every error thrown by a @rarl package. Each package extends it with
 * its own typed errors, so callers can catch `RarlError` or a specific subclass.
 */
export class RarlError extends Error {
  /** A stable machine-readable code, e.g. "SAFETENSORS_BAD_HEADER". */
  readonly code: string;
  /** Structured context (file, row, tensor, field...) for logs and tests. */
  readonly details: Record<string, unknown>;

  constructor(message: string, options: { code?: string; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.code = options.code ?? "RARL_ERROR";
    this.details = options.details ?? {};
  }
}

/** A backend was requested that is not installed or cannot start. */
export class BackendError extends RarlError {}

/**
 * A safetensors file or sharded checkpoint is unreadable, corrupt or inconsistent, or a write failed.
 * `details.file` names the file and `details.tensor` the tensor (when one is involved).
 */
export class SafetensorsError extends RarlError {}
