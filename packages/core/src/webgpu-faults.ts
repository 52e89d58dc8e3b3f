/**
 * WebGPU device errors as typed errors.
 *
 * Dawn reports a validation error, an out-of-memory or a lost device asynchronously (an `uncapturederror` event, the
 * `device.lost` promise); tfjs-backend-webgpu ignores both, so a failed kernel leaves garbage in its output and a read
 * after a lost device can wait forever. Here:
 *  - the first device error (or the loss) is kept as a WebgpuDeviceError naming Dawn's kind and message, the last
 *    kernel dispatched before it was reported, the sizes Dawn's message names and the device limits;
 *  - every read-back (`tensor.data()`, `readToHost`) rejects with it from then on, and a read in flight when the
 *    device is lost rejects at once, instead of returning garbage or hanging;
 *  - `clearWebgpuDeviceFault()` lets a caller that handled it (a test, a REPL) go on.
 * Weight uploads are checked one by one inside error scopes (WebgpuUploadChecks) so that a refused buffer names its
 * tensor.
 */
import * as tf from "@tensorflow/tfjs-core";
import { GpuMemoryError, WebgpuDeviceError } from "./errors";
import { getLogger } from "./logger";

const log = getLogger("core:webgpu");

type GpuErrorLike = { message?: string; constructor?: { name?: string } } | null | undefined;
type ScopedDevice = {
  pushErrorScope(filter: "validation" | "out-of-memory" | "internal"): void;
  popErrorScope(): Promise<GpuErrorLike>;
  limits: Record<string, number>;
};

let fault: WebgpuDeviceError | null = null;
type KernelNote = { name: string; outputShape: number[]; outputBytes: number };
let lastKernel: KernelNote | null = null;
const waiting = new Set<(e: Error) => void>();

/** The device error that poisons read-backs, or null. */
export function webgpuDeviceFault(): WebgpuDeviceError | null {
  return fault;
}

let watchedDevice: { queue?: { onSubmittedWorkDone?(): Promise<unknown> } } | null = null;
let watchedBackend: { ensureCommandEncoderReady?(): void; endComputePassEncoder?(): void; submitQueue?(): void } | null = null;

/**
 * Forgets the recorded device error (reads work again) and returns it. One failure often cascades (an invalid shader,
 * then the pipeline and the command buffer that used it), and Dawn reports the later errors when the commands are
 * submitted, so this first submits tfjs's pending commands, waits until the work is done and those reports came in.
 * Values computed before stay suspect.
 */
export async function clearWebgpuDeviceFault(): Promise<WebgpuDeviceError | null> {
  if (fault && watchedDevice?.queue?.onSubmittedWorkDone) {
    try {
      watchedBackend?.ensureCommandEncoderReady?.();
      watchedBackend?.endComputePassEncoder?.();
      watchedBackend?.submitQueue?.();
    } catch {
      // A lost device: nothing to submit.
    }
    await watchedDevice.queue.onSubmittedWorkDone().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 10));
  }
  const f = fault;
  fault = null;
  return f;
}

/** Called by the kernel guard before each dispatch: the kernel a later device error is attributed to. */
export function noteWebgpuKernel(name: string, outputShape: number[]): void {
  lastKernel = { name, outputShape, outputBytes: tf.util.sizeFromShape(outputShape) * 4 };
}

const KIND_CODE: Record<string, string> = {
  GPUOutOfMemoryError: "WEBGPU_OUT_OF_MEMORY",
  GPUValidationError: "WEBGPU_VALIDATION",
  GPUInternalError: "WEBGPU_INTERNAL",
};

/** The "asked (N) ... limit (M)" pair of a Dawn message such as "Buffer size (X) exceeds the max buffer size limit (Y)". */
export function sizesInDawnMessage(message: string): { askedBytes?: number; limitBytes?: number } {
  const m = /\((\d+)\)[^()\n]*?(?:exceed|larger|greater|above|more than)[^()\n]*?\((\d+)\)/i.exec(message);
  return m ? { askedBytes: Number(m[1]), limitBytes: Number(m[2]) } : {};
}

function firstLine(message: string): string {
  return message.trim().split("\n")[0] ?? "";
}

/** Builds the typed error for a device error event or loss (exported for tests of the message). */
export function deviceFaultError(
  kind: string,
  gpuMessage: string,
  limits: Record<string, number>,
  ctx: { reason?: string; compiling?: KernelNote | null; allocating?: { bytes: number; kernel: KernelNote | null } } = {},
): WebgpuDeviceError {
  const { reason, compiling, allocating } = ctx;
  const code = reason !== undefined ? "WEBGPU_DEVICE_LOST" : (KIND_CODE[kind] ?? "WEBGPU_INTERNAL");
  const sizes = { ...(allocating ? { askedBytes: allocating.bytes } : {}), ...sizesInDawnMessage(gpuMessage) };
  if (allocating && sizes.limitBytes === undefined) sizes.limitBytes = limits.maxBufferSize;
  const k = compiling ?? (allocating ? allocating.kernel : lastKernel);
  const mem = tf.memory() as { numBytesAllocatedInGPU?: number; numBytesInGPU?: number };
  const allocated = mem.numBytesAllocatedInGPU ?? mem.numBytesInGPU;
  const what = reason !== undefined ? `the WebGPU device was lost (reason "${reason}")` : `the WebGPU device reported a ${kind}`;
  const sizeText =
    sizes.askedBytes !== undefined ? `${sizes.askedBytes} bytes asked for, limit ${sizes.limitBytes} bytes` : `bytes asked: not in the message; the device's maxBufferSize is ${limits.maxBufferSize} and maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize}`;
  const out = k ? `"${k.name}" (output [${k.outputShape}], ${k.outputBytes} bytes)` : "";
  const kernelText = allocating
    ? `while allocating a GPU buffer of ${allocating.bytes} bytes${k ? ` for kernel ${out}` : ""}`
    : !k
      ? "no kernel had been dispatched"
      : compiling
        ? `while compiling kernel ${out}`
        : `the last kernel dispatched before it was ${out}`;
  return new WebgpuDeviceError(`webgpu: ${what}: ${firstLine(gpuMessage)} (${sizeText}; ${kernelText}; ${allocated ?? "?"} bytes of GPU buffers allocated). Results computed since are not valid; every read-back fails until clearWebgpuDeviceFault()`, {
    code,
    details: {
      kind: reason !== undefined ? "lost" : kind,
      reason,
      gpuMessage,
      kernel: k?.name,
      kernelOutputBytes: k?.outputBytes,
      compiling: Boolean(compiling),
      allocating: Boolean(allocating),
      ...sizes,
      maxBufferSize: limits.maxBufferSize,
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      allocatedBytes: allocated,
    },
  });
}

/** Error scopes around shader/pipeline/buffer creation still waiting for Dawn's answer. */
const pendingScopes = new Set<Promise<unknown>>();
/** > 0 while WebgpuUploadChecks holds its own scopes around an upload. */
let bufferScopesSuspended = 0;

/**
 * Keeps the first fault, except that an error caught by a scope (a kernel's compile error, a refused buffer)
 * replaces an uncaptured one that only says an object is invalid (Dawn can report that cascade, "[Invalid X] is
 * invalid due to a previous error", before the scope around the root cause resolves).
 */
function setFault(e: WebgpuDeviceError): void {
  const f = fault?.details;
  const cascade = f !== undefined && !f.compiling && !f.allocating && /is invalid|\[Invalid /.test(String(f.gpuMessage ?? ""));
  if (!fault || (cascade && (e.details.compiling === true || e.details.allocating === true))) {
    fault = e;
    log.error("webgpu device error", { code: e.code, message: e.message });
  }
  for (const reject of waiting) reject(fault);
  waiting.clear();
}

type DeviceWithEvents = {
  limits: Record<string, number>;
  lost?: Promise<{ reason?: string; message?: string }>;
  addEventListener?: (t: string, f: (e: { error?: GpuErrorLike }) => void) => void;
};
type ReadingBackend = { read(dataId: object): Promise<unknown> };

/**
 * Installs the uncaptured-error and device.lost handlers on a device and wraps the backend's read so that a
 * recorded fault rejects it. `onError` is called for each error event (the error counter).
 */
export function watchWebgpuDevice(device: unknown, backend: unknown, onError: () => void): void {
  const d = device as DeviceWithEvents;
  watchedDevice = d as typeof watchedDevice;
  d.addEventListener?.("uncapturederror", (e) => {
    onError();
    const kind = e.error?.constructor?.name ?? "GPUError";
    setFault(deviceFaultError(kind, e.error?.message ?? String(e), d.limits));
  });
  d.lost?.then((i) => setFault(deviceFaultError("lost", i?.message ?? "", d.limits, { reason: i?.reason ?? "unknown" })));
  // Shader modules and pipelines are created once per kernel and shape (tfjs caches them), so a scope around each
  // creation is cheap and names the kernel exactly; a WGSL or pipeline error is then attributed to it rather than to
  // whatever ran last before Dawn's report came in.
  const sd = device as ScopedDevice & Record<string, unknown>;
  for (const m of ["createShaderModule", "createComputePipeline"]) {
    const create = sd[m];
    if (typeof create !== "function" || typeof sd.pushErrorScope !== "function") continue;
    sd[m] = (desc: unknown) => {
      const kernel = lastKernel;
      sd.pushErrorScope("validation");
      let created: unknown;
      try {
        created = create.call(sd, desc);
      } finally {
        const p: Promise<unknown> = sd.popErrorScope().then(
          (e) => {
            if (!e) return;
            onError();
            setFault(deviceFaultError(e.constructor?.name ?? "GPUValidationError", e.message ?? "", d.limits, { compiling: kernel }));
          },
          () => undefined,
        );
        pendingScopes.add(p);
        p.finally(() => pendingScopes.delete(p));
      }
      return created;
    };
  }
  // Buffers: tfjs pools them, so creations are rarer than dispatches (new sizes still come with a growing KV cache);
  // a scope around each names the bytes asked for and the kernel whose output (or input upload) needed it when the
  // device runs out of memory or refuses the size. The pops are not awaited one by one (about 0.01 ms per buffer on
  // the software adapter; not measured on a GPU); RARL_WEBGPU_BUFFER_SCOPES=0 turns them off, and such an error is
  // then an uncaptured one attributed to the last kernel dispatched. Suspended inside WebgpuUploadChecks, whose own
  // scopes name the weight.
  const createBuffer = sd.createBuffer;
  if (process.env.RARL_WEBGPU_BUFFER_SCOPES !== "0" && typeof createBuffer === "function" && typeof sd.pushErrorScope === "function") {
    sd.createBuffer = (desc: { size: number }) => {
      if (bufferScopesSuspended > 0) return createBuffer.call(sd, desc);
      const allocating = { bytes: Number(desc.size), kernel: lastKernel };
      sd.pushErrorScope("out-of-memory");
      sd.pushErrorScope("validation");
      try {
        return createBuffer.call(sd, desc);
      } catch (e) {
        // mappedAtCreation with a size the host cannot map throws a RangeError at once.
        const err = deviceFaultError("GPUOutOfMemoryError", `${(e as Error).name}: ${(e as Error).message}`, d.limits, { allocating });
        onError();
        throw err;
      } finally {
        const v = sd.popErrorScope();
        const o = sd.popErrorScope();
        const p: Promise<unknown> = Promise.all([v, o]).then(
          ([ve, oe]) => {
            const e = oe ?? ve;
            if (!e) return;
            onError();
            setFault(deviceFaultError(e.constructor?.name ?? "GPUError", e.message ?? "", d.limits, { allocating }));
          },
          () => undefined,
        );
        pendingScopes.add(p);
        p.finally(() => pendingScopes.delete(p));
      }
    };
  }
  const b = backend as ReadingBackend;
  watchedBackend = backend as typeof watchedBackend;
  const read = b.read.bind(b);
  const settle = async () => {
    // Dawn delivers error events from its own event processing; let any that came with the map callback run, and
    // any compile scope still open answer (it may name the root cause of the fault).
    await new Promise((r) => setImmediate(r));
    if (pendingScopes.size > 0) await Promise.all([...pendingScopes]);
  };
  b.read = (dataId: object) =>
    new Promise((resolve, reject) => {
      if (fault) {
        const f = fault;
        settle().then(() => reject(fault ?? f));
        return;
      }
      waiting.add(reject);
      read(dataId).then(
        (v) => {
          settle().then(() => {
            waiting.delete(reject);
            if (fault) reject(fault);
            else resolve(v);
          });
        },
        (err) => {
          // A read that fails because the device went away: the loss is reported next to it; prefer the typed error.
          setImmediate(() => {
            waiting.delete(reject);
            reject(fault ?? err);
          });
        },
      );
    });
}

type UploadingBackend = { uploadToGPU(dataId: object): void; device: ScopedDevice };

/**
 * Uploads weights to the GPU one at a time, each inside an out-of-memory and a validation error scope, so that a
 * buffer the device refuses (out of memory, or larger than maxBufferSize) becomes a GpuMemoryError naming the
 * tensor, its bytes and the limit. A no-op on other backends. `upload` is synchronous (a loader stays synchronous);
 * the scopes resolve later: await `done()` before using the weights.
 */
export class WebgpuUploadChecks {
  private readonly pending: Promise<GpuMemoryError | null>[] = [];
  private readonly backend: UploadingBackend | null;

  constructor() {
    this.backend = tf.getBackend() === "webgpu" ? (tf.backend() as unknown as UploadingBackend) : null;
  }

  /** Uploads `t` now (webgpu only) and records its scopes' outcome under `name`. */
  upload(name: string, t: tf.Tensor): void {
    const b = this.backend;
    if (!b) return;
    const bytes = t.size * 4;
    const limit = Number(b.device.limits.maxBufferSize);
    const typed = (kind: string, message: string) =>
      new GpuMemoryError(`webgpu: uploading "${name}" (${bytes} bytes) failed with ${kind}: ${firstLine(message)} (the device's maxBufferSize is ${limit} bytes)`, {
        code: kind === "GPUOutOfMemoryError" || kind === "RangeError" ? "WEBGPU_UPLOAD_OUT_OF_MEMORY" : "WEBGPU_UPLOAD_VALIDATION",
        details: { tensor: name, bytes, limit, kind, gpuMessage: message },
      });
    b.device.pushErrorScope("out-of-memory");
    b.device.pushErrorScope("validation");
    let thrown: unknown = null;
    bufferScopesSuspended++;
    try {
      b.uploadToGPU(t.dataId);
    } catch (e) {
      thrown = e;
    } finally {
      bufferScopesSuspended--;
    }
    const validation = b.device.popErrorScope();
    const oom = b.device.popErrorScope();
    if (thrown) throw typed((thrown as Error).name || "Error", (thrown as Error).message ?? String(thrown));
    this.pending.push(
      Promise.all([validation, oom]).then(
        ([v, o]) => {
          const e = o ?? v;
          return e ? typed(e.constructor?.name ?? "GPUError", e.message ?? "") : null;
        },
        (e) => typed("GPUError", String(e)),
      ),
    );
  }

  /** Waits for every upload's scopes; throws the first GpuMemoryError. */
  async done(): Promise<void> {
    const errors = await Promise.all(this.pending.splice(0));
    const first = errors.find((e) => e !== null);
    if (first) throw first;
  }
}
