export { RarlError, BackendError, GpuMemoryError, SafetensorsError, WebgpuDeviceError } from "./errors";
/** GPU memory budget (option, RARL_GPU_MEMORY_GIB, adapter heaps) and the up-front fit check of a model's weights. */
export { budgetFromHeaps, checkFitsGpuMemory, GPU_MEMORY_MARGIN_BYTES, type GpuMemoryBudget, type GpuMemoryHeap, gpuMemoryBudget } from "./gpu-memory";
/** WebGPU device errors: the fault that read-backs reject with, and per-tensor checked weight uploads. */
export { clearWebgpuDeviceFault, WebgpuUploadChecks, webgpuDeviceFault } from "./webgpu-faults";
export { Rng, type RngState } from "./rng";
export { BACKEND_ORDER, getBackendName, getWasmThreads, initBackend, type BackendName, type InitBackendOptions } from "./backend";
export { setWasmTransposeFix } from "./wasm-fixes";
export { checkWebgpuLimits, getWebgpuInfo, WEBGPU_LIMITS, WEBGPU_REQUIRED_LIMITS, type WebgpuInfo, webgpuBindingLimit, webgpuDeviceErrorCount } from "./webgpu";
/** Fused ops: one WGSL kernel on webgpu, the tfjs composite on other backends. */
export { fusedRmsNorm, rmsNormComposite } from "./webgpu-kernels/rmsnorm";
export { fusedSwiglu, swigluComposite } from "./webgpu-kernels/swiglu";
export { type DeviceSamplingParams, deviceSamplingAvailable, sampleRowsOnDevice } from "./webgpu-kernels/sampling";
export { combineLogSoftmaxStats, logSoftmaxGatherAvailable, logSoftmaxGatherComposite, logSoftmaxGatherStats } from "./webgpu-kernels/logsoftmax_gather";
export {
  ATTENTION_KERNEL,
  type AttentionPrefix,
  AttentionShapeError,
  attentionComposite,
  fusedAttention,
  fusedAttentionAvailable,
} from "./webgpu-kernels/attention";
/** Batched matmul (per-batch 2-D products on wasm for large products). */
export { bmm } from "./bmm";
export { writeFileAtomic } from "./fs";
export { closestName, editDistance } from "./suggest";
export { lockFileFor, lockOutput, withOutputLock, OutputLockedError, pidAlive, type LockHolder, type OutputLock } from "./lock";
export { completeJsonlLines, JsonlWriter, repairJsonlForAppend, splitTornTail, warnTornTail } from "./jsonl";
export { readToHost } from "./host-read";
export * from "./safetensors/index";
export { getLogger, setLogSink, formatLogLine, type Logger, type LogLevel, type LogFields } from "./logger";
export { createProgress, type Progress, type ProgressOptions } from "./progress";
export { gradientsRegistered } from "./gradients";
/** Test helpers: the repo root, and its `test-fixtures/` folder. */
export { fixturesDir, repoRoot } from "./testing/fixtures";
export { captureLogs, captureLogsAsync } from "./testing/logs";
/** Test helper: null when the webgpu backend starts, else why not (throws under RARL_REQUIRE_WEBGPU=1). */
export { webgpuSkipReason } from "./testing/webgpu";
/** Test helper: dispatches a webgpu kernel that fails validation (a device error surfacing at the next read-back). */
export { dispatchBrokenKernel } from "./testing/webgpu-fault";
