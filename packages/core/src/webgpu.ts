/**
 * Starting tfjs's webgpu backend, in Node through Dawn (the optional npm package `webgpu`) or in a browser through
 * its own `navigator.gpu`.
 *
 * tfjs-backend-webgpu's own factory asks for a core-feature-level adapter and six limits. This one:
 *  - asks for the high-performance adapter. In Node it first tries Dawn's default backends (Vulkan on Linux, Metal on
 *    macOS, D3D12 on Windows); when none gives an adapter and RARL_WEBGPU_FLAGS is unset it tries OpenGL ES through
 *    EGL (`backend=opengles`, `featureLevel: "compatibility"`, EGL_PLATFORM=surfaceless unless set), which is how a
 *    GPU-less Linux machine with Debian's mesa (llvmpipe) gets a software adapter;
 *  - requests the adapter's maximum of every limit tfjs kernels depend on (buffer and binding sizes first);
 *  - checks them against what @rarl/core's kernels need and throws a BackendError naming the limit, the value
 *    needed and the adapter's value otherwise;
 *  - logs the adapter once (vendor, architecture, description, backend type, the limits it got);
 *  - turns device errors (validation, out-of-memory, a lost device) into a WebgpuDeviceError that the next
 *    read-back rejects with (see webgpu-faults.ts).
 */
import * as tf from "@tensorflow/tfjs-core";
import { BackendError } from "./errors";
import type { GpuMemoryHeap } from "./gpu-memory";
import { getLogger } from "./logger";
import { noteWebgpuKernel, watchWebgpuDevice } from "./webgpu-faults";
import { applyWebgpuKernelFixes } from "./webgpu-fixes";

const log = getLogger("core:webgpu");

/** Limits requested at the adapter's maximum (every one tfjs-backend-webgpu or @rarl/core kernels read). */
export const WEBGPU_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBuffersPerShaderStage",
  "maxBindingsPerBindGroup",
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeInvocationsPerWorkgroup",
] as const;
export type WebgpuLimitName = (typeof WEBGPU_LIMITS)[number];

/**
 * The least value of each limit the kernels used by @rarl/model need (tfjs's matmul and reductions use 256-invocation
 * workgroups with 16 KiB of workgroup memory; its widest kernels bind 8 storage buffers). WebGPU's compatibility
 * defaults are lower than some of these, so they are requested explicitly.
 */
export const WEBGPU_REQUIRED_LIMITS: Readonly<Partial<Record<WebgpuLimitName, number>>> = {
  maxStorageBufferBindingSize: 16 * 1024 * 1024,
  maxBufferSize: 16 * 1024 * 1024,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupStorageSize: 16 * 1024,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupsPerDimension: 65535,
};

/** What was started: the adapter's description and the limits the device got. */
export interface WebgpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Dawn backend: "vulkan", "metal", "d3d12", "opengles", or "browser" when navigator.gpu came from elsewhere. */
  backendType: string;
  /** "core" or "compatibility". */
  featureLevel: string;
  /** Whether Dawn reports a software (CPU) adapter. */
  software: boolean;
  limits: Record<WebgpuLimitName, number>;
  /**
   * The adapter's memory heaps where the `webgpu` package exposes them (Dawn's adapter-properties-memory-heaps;
   * webgpu 0.6.2 does not), else undefined: the GPU memory budget then comes from RARL_GPU_MEMORY_GIB.
   */
  memoryHeaps?: GpuMemoryHeap[];
}

type GpuAdapterLike = {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; memoryHeaps?: GpuMemoryHeap[] };
  limits: Record<string, number>;
  features: Set<string> | { has(f: string): boolean };
  featureLevel?: string;
  isFallbackAdapter?: boolean;
  requestDevice(desc: unknown): Promise<{ limits: Record<string, number>; lost?: Promise<unknown>; destroy?(): void }>;
};
type GpuLike = { requestAdapter(opts?: unknown): Promise<GpuAdapterLike | null> };
type WebgpuModule = { create?: (flags: string[]) => GpuLike; globals?: Record<string, unknown> };

let info: WebgpuInfo | null = null;

/** The adapter/limits of the running webgpu backend, or null before it started. */
export function getWebgpuInfo(): WebgpuInfo | null {
  return info;
}

/** Throws a BackendError naming each limit the adapter gives below what the kernels need. */
export function checkWebgpuLimits(limits: Record<string, number>, where = "adapter"): void {
  const low: string[] = [];
  for (const [name, need] of Object.entries(WEBGPU_REQUIRED_LIMITS)) {
    const got = Number(limits[name] ?? 0);
    if (!(got >= (need as number))) low.push(`${name}: needs ${need}, the ${where} gives ${got}`);
  }
  if (low.length > 0) {
    throw new BackendError(`webgpu: the ${where} lacks limits the kernels need (${low.join("; ")}); use another adapter or backend (RARL_BACKEND=wasm)`, {
      code: "WEBGPU_LIMITS",
      details: { limits: low },
    });
  }
}

/** Requests a device with the adapter's maximum of each limit in WEBGPU_LIMITS; features: timestamp-query if offered. */
async function requestDevice(adapter: GpuAdapterLike) {
  const requiredLimits: Record<string, number> = {};
  for (const name of WEBGPU_LIMITS) {
    const v = adapter.limits[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  const requiredFeatures = adapter.features.has("timestamp-query") ? ["timestamp-query"] : [];
  return adapter.requestDevice({ requiredLimits, requiredFeatures });
}

async function nodeAdapter(
  importOptional: (name: string) => Promise<unknown>,
): Promise<{ adapter: GpuAdapterLike | null; backendType: string; featureLevel: string; tried: string[] }> {
  let mod: WebgpuModule;
  try {
    mod = (await importOptional("webgpu")) as WebgpuModule;
  } catch {
    throw new WebgpuUnavailable(
      "no navigator.gpu and the optional `webgpu` package is not installed (`npm install webgpu@0.6.2`; it ships Dawn for linux-x64/arm64, macOS and Windows)",
    );
  }
  if (typeof mod.create !== "function") throw new WebgpuUnavailable("the `webgpu` package has no create()");
  if (mod.globals) {
    for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  const tried: string[] = [];
  const explicit = process.env.RARL_WEBGPU_FLAGS;
  const attempts: { flags: string[]; featureLevel?: string; label: string }[] = explicit
    ? [{ flags: explicit.split(",").filter(Boolean), label: `flags ${explicit}` }, { flags: explicit.split(",").filter(Boolean), featureLevel: "compatibility", label: `flags ${explicit}, compatibility` }]
    : [
        { flags: [], label: "Dawn default (Vulkan/Metal/D3D12)" },
        { flags: ["backend=opengles"], featureLevel: "compatibility", label: "OpenGL ES via EGL, compatibility" },
      ];
  for (const a of attempts) {
    if (a.flags.includes("backend=opengles") && !process.env.EGL_PLATFORM) process.env.EGL_PLATFORM = "surfaceless";
    const gpu = mod.create(a.flags);
    const adapter = await gpu
      .requestAdapter({ powerPreference: "high-performance", ...(a.featureLevel ? { featureLevel: a.featureLevel } : {}) })
      .catch(() => null);
    tried.push(`${a.label}: ${adapter ? "adapter" : "none"}`);
    if (adapter) {
      const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
      if (!nav) Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true, writable: true });
      else Object.defineProperty(nav, "gpu", { value: gpu, configurable: true });
      const backendType = a.flags.find((f) => f.startsWith("backend="))?.slice(8) ?? (process.platform === "darwin" ? "metal" : process.platform === "win32" ? "d3d12" : "vulkan");
      return { adapter, backendType, featureLevel: a.featureLevel ?? "core", tried };
    }
  }
  return { adapter: null, backendType: "none", featureLevel: "none", tried };
}

/** Why webgpu could not start (not a misconfiguration: the caller may fall through to the next backend). */
export class WebgpuUnavailable extends Error {}

/**
 * Finds an adapter, registers a "webgpu" backend factory on it (replacing tfjs's own) and returns the adapter info.
 * Throws WebgpuUnavailable when there is no package or adapter, BackendError when the adapter's limits are too low.
 */
export async function prepareWebgpu(importOptional: (name: string) => Promise<unknown>): Promise<WebgpuInfo> {
  const g = globalThis as { navigator?: { gpu?: GpuLike } };
  let adapter: GpuAdapterLike | null;
  let backendType: string;
  let featureLevel = "core";
  let tried: string[] = [];
  if (g.navigator?.gpu) {
    adapter = await g.navigator.gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null);
    if (!adapter) {
      adapter = await g.navigator.gpu.requestAdapter({ powerPreference: "high-performance", featureLevel: "compatibility" }).catch(() => null);
      featureLevel = "compatibility";
    }
    backendType = "browser";
  } else {
    ({ adapter, backendType, featureLevel, tried } = await nodeAdapter(importOptional));
  }
  if (!adapter) {
    throw new WebgpuUnavailable(
      `navigator.gpu found no GPU adapter (${tried.join("; ") || "navigator.gpu"}). On Linux install a Vulkan driver (NVIDIA's, or mesa-vulkan-drivers + libvulkan1) or, for the software adapter, Debian's libegl-mesa0 libgles2 libgl1-mesa-dri (EGL_PLATFORM=surfaceless)`,
    );
  }
  checkWebgpuLimits(adapter.limits, "adapter");
  let webgpuMod: { WebGPUBackend: new (device: unknown, adapterInfo?: unknown) => tf.KernelBackend };
  try {
    webgpuMod = (await import("@tensorflow/tfjs-backend-webgpu")) as unknown as typeof webgpuMod;
  } catch (e) {
    throw new WebgpuUnavailable(`@tensorflow/tfjs-backend-webgpu failed to load: ${(e as Error).message}`);
  }
  const ai = adapter.info ?? {};
  const a = adapter;
  const started: WebgpuInfo = {
    vendor: ai.vendor ?? "",
    architecture: ai.architecture ?? "",
    device: ai.device ?? "",
    description: ai.description ?? "",
    backendType,
    featureLevel: adapter.featureLevel ?? featureLevel,
    software: Boolean(adapter.isFallbackAdapter) || /llvmpipe|lavapipe|swiftshader/i.test(`${ai.device} ${ai.description}`),
    limits: {} as Record<WebgpuLimitName, number>,
    ...(Array.isArray(ai.memoryHeaps) ? { memoryHeaps: ai.memoryHeaps.map((h) => ({ size: Number(h.size), properties: Number(h.properties) })) } : {}),
  };
  applyWebgpuKernelFixes();
  if (tf.findBackendFactory("webgpu")) tf.removeBackend("webgpu");
  tf.registerBackend(
    "webgpu",
    async () => {
      const device = await requestDevice(a);
      for (const name of WEBGPU_LIMITS) started.limits[name] = Number(device.limits[name] ?? 0);
      checkWebgpuLimits(device.limits, "device");
      if (!info) {
        const { limits, ...rest } = started;
        log.info("webgpu adapter", { ...rest, ...limits });
      }
      info = started;
      const backend = new webgpuMod.WebGPUBackend(device, ai);
      guardBindingSizes(backend as unknown as GuardedBackend, started.limits.maxStorageBufferBindingSize);
      watchWebgpuDevice(device, backend, () => deviceErrors++);
      return backend;
    },
    3,
  );
  return started;
}

type GuardedBackend = {
  runWebGPUProgram(program: { shaderKey?: string; variableNames?: string[]; outputShape: number[] }, inputs: tf.TensorInfo[], dtype: tf.DataType, ...rest: unknown[]): tf.TensorInfo;
};

/**
 * The binding limit the guard enforces: the device's maxStorageBufferBindingSize, or RARL_WEBGPU_BINDING_LIMIT
 * (bytes) when that is smaller (tests force a small limit to exercise the error and the chunked paths).
 */
export function webgpuBindingLimit(): number {
  const dev = info?.limits.maxStorageBufferBindingSize ?? Number.POSITIVE_INFINITY;
  const forced = Number(process.env.RARL_WEBGPU_BINDING_LIMIT ?? Number.NaN);
  return Number.isFinite(forced) && forced > 0 ? Math.min(forced, dev) : dev;
}

function bytesOf(shape: number[]): number {
  return tf.util.sizeFromShape(shape) * 4; // tfjs-backend-webgpu stores float32, int32 and bool as 4 bytes
}

/**
 * tfjs-backend-webgpu binds each input and the output of a kernel whole. A buffer larger than the device's
 * maxStorageBufferBindingSize fails WebGPU validation, which Dawn only reports as an uncaptured error: the kernel's
 * output is then garbage. This wrapper throws a BackendError first, naming the kernel, the tensor, the bytes asked
 * for and the limit.
 */
function guardBindingSizes(backend: GuardedBackend, deviceLimit: number): void {
  const run = backend.runWebGPUProgram.bind(backend);
  backend.runWebGPUProgram = (program, inputs, dtype, ...rest) => {
    const limit = Math.min(deviceLimit, webgpuBindingLimit());
    const check = (what: string, shape: number[]) => {
      const bytes = bytesOf(shape);
      if (bytes > limit) {
        throw new BackendError(
          `webgpu: kernel "${program.shaderKey ?? "?"}" would bind ${what} of shape [${shape}] (${bytes} bytes), above the adapter's maxStorageBufferBindingSize ${limit} bytes; split the tensor (e.g. vocabulary chunks) or use a GPU with a larger limit`,
          { code: "WEBGPU_BINDING_LIMIT", details: { kernel: program.shaderKey, tensor: what, shape, bytes, limit } },
        );
      }
    };
    const maxBuffers = (backend as unknown as { device: { limits: Record<string, number> } }).device.limits.maxStorageBuffersPerShaderStage;
    if (inputs.length + 1 > maxBuffers) {
      throw new BackendError(
        `webgpu: kernel "${program.shaderKey ?? "?"}" would bind ${inputs.length} inputs + 1 output as storage buffers, above the adapter's maxStorageBuffersPerShaderStage ${maxBuffers}`,
        { code: "WEBGPU_BINDING_COUNT", details: { kernel: program.shaderKey, buffers: inputs.length + 1, limit: maxBuffers } },
      );
    }
    inputs.forEach((t, i) => {
      check(`input "${program.variableNames?.[i] ?? i}"`, t.shape);
    });
    check("its output", program.outputShape);
    noteWebgpuKernel(program.shaderKey ?? "?", program.outputShape);
    return run(program, inputs, dtype, ...rest);
  };
}

let deviceErrors = 0;

/** Number of WebGPU device errors (validation, out-of-memory) reported so far; tests assert it stays 0. */
export function webgpuDeviceErrorCount(): number {
  return deviceErrors;
}
