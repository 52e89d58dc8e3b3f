/**
 * Kernel fixes for @tensorflow/tfjs-backend-webgpu 4.22, registered by @rarl/core when the webgpu backend starts
 * (the wasm ones are in wasm-fixes.ts). One file per kernel family under webgpu-kernels/, each tested against cpu:
 *  - softmax.ts: rows masked with -FLT_MAX came out NaN (seed of the running max one ulp too high).
 *  - matmul.ts: no split-K (float atomics) for long-K products, so runs are exact from run to run (resume).
 *    It also routes skinny (matmul_skinny.ts) and scalar-layout (matmul_layout.ts) products (RARL_WEBGPU_TUNED_MATMUL=0: off).
 *  - segment_sum.ts: UnsortedSegmentSum (gather's gradient) summed in index order instead of with float atomics.
 *  - addn.ts: AddN of more tensors than one shader may bind is added in groups (it failed validation: garbage).
 *  - rmsnorm.ts, swiglu.ts: fused forward kernels (RarlRmsNorm, RarlSwiglu) behind the ops fusedRmsNorm and
 *    fusedSwiglu, which run the tfjs composite on other backends.
 *  - attention.ts: fused grouped-query attention (RarlAttention) behind fusedAttention (prefill, decode over the KV
 *    cache, shared prompt prefix), the tfjs composite on other backends.
 * RARL_WEBGPU_DETERMINISTIC=0 turns the matmul and segment-sum ones off.
 */
import { registerWebgpuAddN } from "./webgpu-kernels/addn";
import { registerWebgpuLogSoftmaxGather } from "./webgpu-kernels/logsoftmax_gather";
import { registerWebgpuAttention } from "./webgpu-kernels/attention";
import { registerWebgpuDeterministicMatmul } from "./webgpu-kernels/matmul";
import { registerWebgpuRmsNorm } from "./webgpu-kernels/rmsnorm";
import { registerWebgpuSampling } from "./webgpu-kernels/sampling";
import { registerWebgpuSegmentSum } from "./webgpu-kernels/segment_sum";
import { registerWebgpuSoftmax } from "./webgpu-kernels/softmax";
import { registerWebgpuSwiglu } from "./webgpu-kernels/swiglu";

let applied = false;

/** Registers @rarl/core's webgpu kernels (idempotent; after @tensorflow/tfjs-backend-webgpu has loaded). */
export function applyWebgpuKernelFixes(): void {
  if (applied) return;
  applied = true;
  registerWebgpuSoftmax();
  registerWebgpuDeterministicMatmul();
  registerWebgpuSegmentSum();
  registerWebgpuAddN();
  registerWebgpuRmsNorm();
  registerWebgpuSwiglu();
  registerWebgpuSampling();
  registerWebgpuLogSoftmaxGather();
  registerWebgpuAttention();
}
