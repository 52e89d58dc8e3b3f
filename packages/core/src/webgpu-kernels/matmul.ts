/**
 * BatchMatMul / _FusedMatMul for tfjs-backend-webgpu 4.22, deterministic. For a single product with a long inner
 * dimension (K >= 2000) and a small output, tfjs picks its split-K program, which adds the K-slices into the output
 * with float atomics: the summation order, hence the last bits, change from run to run. In a model that is the
 * backward pass through the lm_head (dLogits [T, V] x W [V, H], K = V) and any product over the vocabulary, so two
 * identical GRPO runs drifted apart (different samples by step 3) and resume was not exact. This wrapper makes tfjs
 * use its small-output-tile program (no atomics) for those shapes; every other shape keeps tfjs's choice.
 * RARL_WEBGPU_DETERMINISTIC=0 turns the wrapper off (split-K's speed back, run-to-run exactness lost).
 */
import * as tf from "@tensorflow/tfjs-core";

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
