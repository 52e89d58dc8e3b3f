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

/** A backend was requested that is not installed or cannot start, or it cannot run what was asked. */
export class BackendError extends RarlError {}

/**
 * What was asked does not fit in GPU memory or in one GPU buffer: a model larger than the GPU memory budget
 * (code GPU_MODEL_TOO_BIG) or a weight upload the device refused (WEBGPU_UPLOAD_OUT_OF_MEMORY,
 * WEBGPU_UPLOAD_VALIDATION). `details.tensor` names the tensor, `details.bytes` the bytes asked for, `details.limit`
 * the limit (budget or maxBufferSize) in bytes.
 */
export class GpuMemoryError extends BackendError {}

/**
 * The WebGPU device reported an error while kernels ran (codes WEBGPU_OUT_OF_MEMORY, WEBGPU_VALIDATION,
 * WEBGPU_INTERNAL) or was lost (WEBGPU_DEVICE_LOST). Dawn reports these asynchronously, so they surface at the next
 * read-back. `details.kernel` is the last kernel dispatched before the report, `details.askedBytes` /
 * `details.limitBytes` the sizes Dawn's message names (when it names them), `details.gpuMessage` Dawn's message.
 */
export class WebgpuDeviceError extends BackendError {}

/**
 * A safetensors file or sharded checkpoint is unreadable, corrupt or inconsistent, or a write failed.
 * `details.file` names the file and `details.tensor` the tensor (when one is involved).
 */
export class SafetensorsError extends RarlError {}
