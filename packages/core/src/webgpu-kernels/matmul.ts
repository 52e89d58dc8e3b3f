/**
 * BatchMatMul / _FusedMatMul for tfjs-backend-webgpu 4.22, deterministic. For a single product with a long inner
 * dimension (K >= 2000) and a small output, tfjs picks its split-K program, which adds the K-slices into the output
 * with float atomics: the summation order, hence the last bits, change from run to run. In a model that is the
 * backward pass through the lm_head (dLogits [T, V] x W [V, H], K = V) and any product over the vocabulary, so two
 * identical GRPO runs drifted apart (different samples by step 3) and resume was not exact. This wrapper makes tfjs
 * use its small-output-tile program (no atomics) for those shapes; every other shape keeps tfjs's choice.
 * RARL_WEBGPU_DETERMINISTIC=0 turns that off (split-K's speed back, run-to-run exactness lost).
 *
 * The same wrapper routes skinny products (one output side <= 16: decode-time projections and lm_head chunks) to
 * the tuned kernel of matmul_skinny.ts, and large products that tfjs would run with its scalar program (N not a
 * multiple of 4, transposeB) through the layout rewrites of matmul_layout.ts, so they run its vec4 program;
 * RARL_WEBGPU_TUNED_MATMUL=0 turns both off (tfjs's own program for every shape). _FusedMatMul goes there only without bias and activation. A WEBGPU_MATMUL_PROGRAM_TYPE flag set by the
 * user (>= 0) forces tfjs's program, as in tfjs.
 */
import * as tf from "@tensorflow/tfjs-core";
import { webgpuBindingLimit } from "../webgpu";
import { planLayout, runLayout } from "./matmul_layout";
import { planSkinny, runSkinny, skinnyMatmulOn } from "./matmul_skinny";
import type { WebgpuBackendLike } from "./program";

/** tfjs-backend-webgpu's MatMulProgramType.MatMulSmallOutputSizeProgram. */
const SMALL_OUTPUT_SIZE = 2;

/** Whether tfjs-backend-webgpu 4.22 would choose its (atomic) split-K program for this product (its BatchMatMul_impl rule). */
export function wouldSplitK(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean, threshold: number): boolean {
  const ra = aShape.length;
  const rb = bShape.length;
  const M = transposeA ? aShape[ra - 1] : aShape[ra - 2];
  const N = transposeB ? bShape[rb - 2] : bShape[rb - 1];
  const K = transposeB ? bShape[rb - 1] : bShape[rb - 2];
  const batch = Math.max(tf.util.sizeFromShape(aShape.slice(0, -2)), tf.util.sizeFromShape(bShape.slice(0, -2)));
  const wg32 = batch * Math.ceil(M / 32) * Math.ceil(N / 32);
  const few = wg32 <= threshold || (M <= 8 && wg32 <= threshold * 2);
  return few && batch * M * N > 128 && batch === 1 && K >= 2000;
}

export function deterministicMatmulOn(): boolean {
  return process.env.RARL_WEBGPU_DETERMINISTIC !== "0";
}

/** A _FusedMatMul with a bias, an activation or PReLU weights (or a BatchMatMul: none of those). */
function hasEpilogue(args: Parameters<tf.KernelFunc>[0]): boolean {
  const { bias, preluActivationWeights } = args.inputs as { bias?: tf.TensorInfo; preluActivationWeights?: tf.TensorInfo };
  const activation = (args.attrs as { activation?: string } | undefined)?.activation;
  return bias != null || preluActivationWeights != null || (activation != null && activation !== "linear");
}

/** Wraps the webgpu BatchMatMul and _FusedMatMul kernels (keeps their setup/dispose). */
export function registerWebgpuDeterministicMatmul(): void {
  for (const name of ["BatchMatMul", "_FusedMatMul"]) {
    const orig = tf.getKernel(name, "webgpu");
    if (!orig) continue;
    const fn = orig.kernelFunc;
    const kernelFunc: tf.KernelFunc = (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
      const backend = args.backend as unknown as { thresholdToIncreaseWorkgroups: number };
      const env = tf.env();
      if (skinnyMatmulOn() && env.getNumber("WEBGPU_MATMUL_PROGRAM_TYPE") < 0 && a.dtype === "float32" && b.dtype === "float32" && !hasEpilogue(args)) {
        const be = args.backend as unknown as WebgpuBackendLike;
        const plan = planSkinny(a.shape, b.shape, transposeA, transposeB);
        if (plan) return runSkinny(be, a, b, plan);
        const layout = planLayout(a.shape, b.shape, transposeA, transposeB, backend.thresholdToIncreaseWorkgroups, webgpuBindingLimit());
        if (layout) {
          const bmm = tf.getKernel("BatchMatMul", "webgpu")!.kernelFunc; // this wrapper: the inner product is routed again
          return runLayout(be, a, b, transposeA, transposeB, layout, (x, y, tA, tB) => bmm({ inputs: { a: x, b: y }, backend: args.backend, attrs: { transposeA: tA, transposeB: tB } }) as tf.TensorInfo);
        }
      }
      if (!deterministicMatmulOn() || env.getNumber("WEBGPU_MATMUL_PROGRAM_TYPE") >= 0 || !wouldSplitK(a.shape, b.shape, transposeA, transposeB, backend.thresholdToIncreaseWorkgroups)) {
        return fn(args);
      }
      env.set("WEBGPU_MATMUL_PROGRAM_TYPE", SMALL_OUTPUT_SIZE);
      try {
        return fn(args);
      } finally {
        env.set("WEBGPU_MATMUL_PROGRAM_TYPE", -1);
      }
    };
    tf.unregisterKernel(name, "webgpu");
    tf.registerKernel({ ...orig, kernelFunc });
  }
}
