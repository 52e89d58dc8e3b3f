/**
 * GPU memory budget for loading a model: WebGPU has no standard query for how much memory a device has. Dawn's
 * `adapter-properties-memory-heaps` feature would give the heap sizes, but the Node `webgpu` package (0.6.2) does
 * not expose it (its GPUAdapterInfo has only vendor, architecture, device, description and the subgroup sizes, and
 * the software adapter lists no such feature). So the budget comes, in this order, from: an explicit option, the env
 * var RARL_GPU_MEMORY_GIB, the adapter's memory heaps where a future `webgpu` exposes them; otherwise it is unknown
 * and the load is not checked up front (each upload is still checked by an error scope, see WebgpuUploadChecks).
 */
import { GpuMemoryError } from "./errors";

/** A GPU memory budget in bytes and where it came from (for the error message). */
export interface GpuMemoryBudget {
  bytes: number;
  /** "option", "RARL_GPU_MEMORY_GIB=<value>" or "adapter memory heaps". */
  source: string;
}

/** One adapter memory heap as Dawn's adapter-properties-memory-heaps describes it (properties: bit 0 = device-local). */
export interface GpuMemoryHeap {
  size: number;
  properties: number;
}

/** WGPUHeapProperty_DeviceLocal in Dawn's webgpu.h. */
const DEVICE_LOCAL = 0x1;

/** The device-local heap bytes of an adapter's memory heaps (null when none is device-local). */
export function budgetFromHeaps(heaps: readonly GpuMemoryHeap[] | undefined): number | null {
  if (!heaps?.length) return null;
  const local = heaps.filter((h) => (Number(h.properties) & DEVICE_LOCAL) !== 0).reduce((a, h) => a + Number(h.size), 0);
  return local > 0 ? local : null;
}

/**
 * The GPU memory budget: `opts.bytes` if given, else RARL_GPU_MEMORY_GIB (GiB, may be fractional), else the
 * device-local heaps, else null (unknown). A malformed RARL_GPU_MEMORY_GIB is a GpuMemoryError, not ignored.
 */
export function gpuMemoryBudget(opts: { bytes?: number; heaps?: readonly GpuMemoryHeap[]; env?: NodeJS.ProcessEnv } = {}): GpuMemoryBudget | null {
  if (opts.bytes !== undefined) return { bytes: opts.bytes, source: "option" };
  const raw = (opts.env ?? process.env).RARL_GPU_MEMORY_GIB;
  if (raw !== undefined && raw !== "") {
    const gib = Number(raw);
    if (!(Number.isFinite(gib) && gib > 0)) {
      throw new GpuMemoryError(`RARL_GPU_MEMORY_GIB must be a positive number of GiB, got "${raw}"`, {
        code: "GPU_MEMORY_BUDGET",
        details: { field: "RARL_GPU_MEMORY_GIB", value: raw },
      });
    }
    return { bytes: Math.floor(gib * 2 ** 30), source: `RARL_GPU_MEMORY_GIB=${raw}` };
  }
  const heaps = budgetFromHeaps(opts.heaps);
  return heaps === null ? null : { bytes: heaps, source: "adapter memory heaps" };
}

/**
 * Room kept free beside the weights for activations, the KV cache, LoRA state and tfjs's buffer pool, unless the
 * caller states another: 1 GiB. A GRPO step on Qwen2-VL-2B needs more than that; the check is a floor that catches
 * a model that cannot even load, not a promise that training fits.
 */
export const GPU_MEMORY_MARGIN_BYTES = 2 ** 30;

const fmt = (b: number) => `${b} bytes (${(b / 2 ** 30).toFixed(2)} GiB)`;

/**
 * Throws a GpuMemoryError (code GPU_MODEL_TOO_BIG) when the tensors, uploaded in the given order, plus `marginBytes`
 * exceed the budget. The error names the first tensor past the budget, its bytes, the running total it would reach,
 * the total, the margin and the budget with its source.
 */
export function checkFitsGpuMemory(
  tensors: Iterable<readonly [name: string, bytes: number]>,
  budget: GpuMemoryBudget,
  marginBytes = GPU_MEMORY_MARGIN_BYTES,
  what = "model",
): void {
  const limit = budget.bytes - marginBytes;
  let total = 0;
  let first: { tensor: string; bytes: number; reached: number } | null = null;
  for (const [name, bytes] of tensors) {
    total += bytes;
    if (!first && total > limit) first = { tensor: name, bytes, reached: total };
  }
  if (!first) return;
  throw new GpuMemoryError(
    `${what} does not fit in GPU memory: its weights need ${fmt(total)} + a margin of ${fmt(marginBytes)} for activations, above the budget of ${fmt(budget.bytes)} (${budget.source}); the first tensor past it is "${first.tensor}" (${first.bytes} bytes, which would bring the weights to ${first.reached} bytes). Use a GPU with more memory, weightResidency "host", or set RARL_GPU_MEMORY_GIB if the budget is wrong`,
    { code: "GPU_MODEL_TOO_BIG", details: { tensor: first.tensor, bytes: first.bytes, reached: first.reached, total, margin: marginBytes, limit: budget.bytes, source: budget.source } },
  );
}
