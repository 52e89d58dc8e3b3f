/**
 * Layout rewrites for large matmuls that tfjs-backend-webgpu 4.22 would run with its scalar (non-vec4) tiled program.
 *
 * tfjs's packed program loads and computes with vec4 only when the output's column count N is a multiple of 4 and
 * B is not transposed (and the inner size, or M under transposeA, is a multiple of 4). Two of the model's large
 * products miss that and run 2-3x slower (measured in bench/matmul-gpu.ts):
 *  - N % 4 != 0: every prefill/training product W x xT over T tokens when T is not a multiple of 4 (attention
 *    scores over T keys too). Rewrite: pad B's columns with zeros to a multiple of 4, multiply, slice the output.
 *  - transposeB: h [T, H] x W [V, H]ᵀ (the lm_head chunks over a sequence, teacher-forced log-probs) and the
 *    gradients tfjs's autodiff takes with transposeB. Rewrite: either transpose B once (a copy of B), or compute
 *    (B Aᵀ)ᵀ (a copy of A and of the output), whichever moves fewer bytes.
 * The result is the same product (zeros add nothing; only the order of tfjs's own summation is unchanged), every
 * intermediate is disposed. Skinny products (a side <= 16), small products and _FusedMatMul with an epilogue keep
 * their route. Part of the tuned route: RARL_WEBGPU_TUNED_MATMUL=0 turns it off with the skinny kernel.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { WebgpuBackendLike } from "./program";

/** Smallest product (batch·M·N·K multiply-adds) rewritten: below it the extra copy kernels cost more than they save. */
export const LAYOUT_MIN_MACS = 1 << 16;
/** Both output sides must exceed this (smaller sides are the skinny kernel's, or tiny). */
const LAYOUT_MIN_SIDE = 16;

export type LayoutPlan =
  /** Pad B's last axis (N) with zeros to a multiple of 4 (B not transposed). */
  | { kind: "padN"; N4: number }
  /** Transpose B ([.., N, K] -> [.., K, N]) and multiply untransposed in B. */
  | { kind: "transposeB" }
  /** (B · Aᵀ)ᵀ: Aᵀ (a copy unless transposeA), B untransposed on the left, the output transposed back. */
  | { kind: "swap" };

interface Dims {
  M: number;
  N: number;
  K: number;
  batchA: number;
  batchB: number;
}

function dims(aShape: number[], bShape: number[], tA: boolean, tB: boolean): Dims {
  const ra = aShape.length;
  const rb = bShape.length;
  return {
    M: tA ? aShape[ra - 1] : aShape[ra - 2],
    N: tB ? bShape[rb - 2] : bShape[rb - 1],
    K: tA ? aShape[ra - 2] : aShape[ra - 1],
    batchA: tf.util.sizeFromShape(aShape.slice(0, -2)),
    batchB: tf.util.sizeFromShape(bShape.slice(0, -2)),
  };
}

/**
 * The rewrite for matMul(a, b, tA, tB), or null when tfjs's own program already runs vec4, or when tfjs runs its
 * small-output program (few 32x32 tiles: `threshold` is the backend's thresholdToIncreaseWorkgroups), or the
 * product is small.
 */
export function planLayout(aShape: number[], bShape: number[], tA: boolean, tB: boolean, threshold = 8, limitBytes = Number.POSITIVE_INFINITY): LayoutPlan | null {
  if (aShape.length < 2 || bShape.length < 2) return null;
  const { M, N, K, batchA, batchB } = dims(aShape, bShape, tA, tB);
  if (!(batchA === batchB || batchA === 1 || batchB === 1)) return null;
  if (M <= LAYOUT_MIN_SIDE || N <= LAYOUT_MIN_SIDE || Math.max(batchA, batchB) * M * N * K < LAYOUT_MIN_MACS) return null;
  if (Math.max(batchA, batchB) * Math.ceil(M / 32) * Math.ceil(N / 32) <= threshold) return null;
  // tfjs's vec4 condition on the left operand: K % 4 (A untransposed) or M % 4 (A transposed).
  const leftVec = (!tA && K % 4 === 0) || (tA && M % 4 === 0);
  // Every tensor a rewrite makes (padded B, padded output, transposed copies) must fit one storage binding, as the
  // inputs did: otherwise tfjs's own program runs (or the guard reports the input that is too large).
  const fits = (elements: number) => elements * 4 <= limitBytes;
  const M4 = Math.ceil(M / 4) * 4;
  const N4 = Math.ceil(N / 4) * 4;
  const batch = Math.max(batchA, batchB);
  if (!tB) return leftVec && N % 4 !== 0 && fits(batchB * K * N4) && fits(batch * M * N4) ? { kind: "padN", N4 } : null;
  // Elements moved by the extra copies: transposing B reads and writes B; the swap copies A (unless transposeA)
  // and transposes the output (which the padding of M, if any, enlarges a little).
  const costB = leftVec && fits(batch * M * N4) ? 2 * batchB * N * K : Number.POSITIVE_INFINITY;
  const costSwap = K % 4 === 0 && fits(batchA * K * M4) && fits(batch * N * M4) ? (tA ? 0 : 2 * batchA * M * K) + 2 * batch * M * N : Number.POSITIVE_INFINITY;
  if (costB === Number.POSITIVE_INFINITY && costSwap === Number.POSITIVE_INFINITY) return null;
  return costB <= costSwap ? { kind: "transposeB" } : { kind: "swap" };
}

type MatMulFn = (a: tf.TensorInfo, b: tf.TensorInfo, tA: boolean, tB: boolean) => tf.TensorInfo;

/**
 * Runs matMul(a, b, tA, tB) as planned, with `matmul` (the wrapped BatchMatMul, so the inner product is routed
 * again: it is vec4 now) for the product. Returns a tensor of tfjs's output shape.
 */
export function runLayout(backend: WebgpuBackendLike, a: tf.TensorInfo, b: tf.TensorInfo, tA: boolean, tB: boolean, plan: LayoutPlan, matmul: MatMulFn): tf.TensorInfo {
  const kernel = (name: string) => tf.getKernel(name, "webgpu")!.kernelFunc;
  const run = (name: string, inputs: Record<string, tf.TensorInfo>, attrs: Record<string, unknown>) =>
    kernel(name)({ inputs, backend, attrs: attrs as unknown as tf.NamedAttrMap }) as tf.TensorInfo;
  const { M, N, K, batchA, batchB } = dims(a.shape, b.shape, tA, tB);
  const batch = Math.max(batchA, batchB);
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const temps: tf.TensorInfo[] = [];
  const keep = (t: tf.TensorInfo) => {
    temps.push(t);
    return t;
  };
  try {
    const a3 = keep(run("Reshape", { x: a }, { shape: tA ? [batchA, K, M] : [batchA, M, K] }));
    const b3 = keep(run("Reshape", { x: b }, { shape: tB ? [batchB, N, K] : [batchB, K, N] }));
    let y: tf.TensorInfo;
    if (plan.kind === "padN") {
      const bp = keep(run("PadV2", { x: b3 }, { paddings: [[0, 0], [0, 0], [0, plan.N4 - N]], constantValue: 0 }));
      const yp = keep(matmul(a3, bp, tA, false));
      y = keep(run("Slice", { x: yp }, { begin: [0, 0, 0], size: [batch, M, N] }));
    } else if (plan.kind === "transposeB") {
      const bt = keep(run("Transpose", { x: b3 }, { perm: [0, 2, 1] }));
      y = keep(matmul(a3, bt, tA, false));
    } else {
      const at = tA ? a3 : keep(run("Transpose", { x: a3 }, { perm: [0, 2, 1] })); // [batchA, K, M]
      const yt = keep(matmul(b3, at, false, false)); // [batch, N, M]
      y = keep(run("Transpose", { x: yt }, { perm: [0, 2, 1] }));
    }
    return run("Reshape", { x: y }, { shape: [...outer, M, N] });
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}
