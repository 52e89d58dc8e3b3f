/**
 * UnsortedSegmentSum for tfjs-backend-webgpu 4.22, deterministic. tfjs's kernel adds every input row into its
 * segment with float atomics (a compare-exchange loop), so when several rows hit one segment the order of the adds,
 * and the last bits of the sum, change from run to run. It is the gradient of `gather` w.r.t. its params, which the
 * model takes through repeated-index row gathers (one prompt's KV cache shared by its G samples, row selection).
 * Here each output element sums its rows in index order: one invocation per (segment, column), looping over the N
 * rows. That costs numSegments x N per column, so above DETERMINISTIC_SEGMENT_SUM_LIMIT (e.g. a gradient w.r.t. a
 * trainable 151936-row embedding) tfjs's atomic kernel is used, and under RARL_WEBGPU_DETERMINISTIC=0 always.
 */
import * as tf from "@tensorflow/tfjs-core";
import { deterministicMatmulOn } from "./matmul";
import { flatLayout, MAIN, type WebgpuBackendLike, type WgslProgram } from "./program";

/** Largest numSegments x N x columns summed by the deterministic kernel (beyond it tfjs's atomic one runs). */
export const DETERMINISTIC_SEGMENT_SUM_LIMIT = 2 ** 30;

function segmentSumProgram(numSegments: number, cols: number): WgslProgram {
  return {
    variableNames: ["x", "segmentIds"],
    outputShape: [numSegments, cols],
    dispatchLayout: flatLayout(2),
    dispatch: [Math.ceil((numSegments * cols) / 64), 1, 1],
    workgroupSize: [64, 1, 1],
    shaderKey: "rarl_segment_sum",
    size: true,
    getUserCode: () => `
    ${MAIN} {
      if (index < uniforms.size) {
        let coords = getCoordsFromIndex(index);
        let s = coords[0];
        let c = coords[1];
        let n = uniforms.xShape[0];
        var acc = 0.0;
        for (var i = 0; i < n; i++) {
          if (i32(getSegmentIds(i)) == s) { acc += f32(getX(i, c)); }
        }
        setOutputAtIndex(index, acc);
      }
    }`,
  };
}

/** Registers the deterministic UnsortedSegmentSum (float32; int32 and oversized problems go to tfjs's kernel). */
export function registerWebgpuSegmentSum(): void {
  const orig = tf.getKernel("UnsortedSegmentSum", "webgpu");
  const reshape = tf.getKernel("Reshape", "webgpu")?.kernelFunc;
  if (!orig || !reshape) return;
  const fn = orig.kernelFunc;
  tf.unregisterKernel("UnsortedSegmentSum", "webgpu");
  tf.registerKernel({
    ...orig,
    kernelFunc: (args) => {
      const { x, segmentIds } = args.inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
      const numSegments = (args.attrs as { numSegments: number }).numSegments;
      const n = x.shape[0];
      const cols = tf.util.sizeFromShape(x.shape.slice(1));
      if (!deterministicMatmulOn() || x.dtype !== "float32" || numSegments * n * cols > DETERMINISTIC_SEGMENT_SUM_LIMIT || x.shape.length < 1) return fn(args);
      const b = args.backend as WebgpuBackendLike;
      const x2 = reshape({ inputs: { x }, backend: b, attrs: { shape: [n, cols] } }) as tf.TensorInfo;
      const res = b.runWebGPUProgram(segmentSumProgram(numSegments, cols), [x2, segmentIds], "float32");
      const out = reshape({ inputs: { x: res }, backend: b, attrs: { shape: [numSegments, ...x.shape.slice(1)] } }) as tf.TensorInfo;
      b.disposeData(x2.dataId);
      b.disposeData(res.dataId);
      return out;
    },
  });
}
