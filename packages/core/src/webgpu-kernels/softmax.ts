/**
 * Softmax for tfjs-backend-webgpu 4.22. Its kernel seeds each row's running max with the WGSL literal -3.402823e+38,
 * which as f32 is one ulp above -FLT_MAX. A row whose every entry is masked with -FLT_MAX (transformers' additive
 * mask value, finfo.min: the padding query rows of a left-padded batch) then gets max = -3.402823e+38, every
 * exp(x - max) underflows to 0 and the row becomes 0/0 = NaN, where cpu/wasm give the uniform row. This kernel is
 * the same one-workgroup-per-row reduction, seeded with -FLT_MAX exactly (and -inf-safe: a row of -inf stays NaN
 * as on cpu).
 */
import * as tf from "@tensorflow/tfjs-core";
import { flatLayout, MAIN, NEG_FLT_MAX, registerWebgpuKernel, type WebgpuBackendLike, type WgslProgram } from "./program";

function softmaxProgram(rows: number, cols: number): WgslProgram {
  const wg = cols >= 4096 ? 256 : 64;
  return {
    variableNames: ["logits"],
    outputShape: [rows, cols],
    dispatchLayout: flatLayout(2),
    dispatch: [rows, 1, 1],
    workgroupSize: [wg, 1, 1],
    shaderKey: `rarl_softmax_${wg}`,
    getUserCode: () => `
    var<workgroup> buf : array<f32, ${wg}>;
    var<workgroup> rowMax : f32;
    var<workgroup> rowSum : f32;
    const blockSize = ${wg};
    ${MAIN} {
      let row = index / blockSize;
      let tid = i32(localId.x);
      let cols = uniforms.outShape[1];
      var m = ${NEG_FLT_MAX};
      for (var col = tid; col < cols; col += blockSize) {
        m = max(m, getLogits(row, col));
      }
      buf[tid] = m;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { buf[tid] = max(buf[tid], buf[tid + s]); }
        workgroupBarrier();
      }
      if (tid == 0) { rowMax = buf[0]; }
      workgroupBarrier();
      var acc = 0.0;
      for (var col = tid; col < cols; col += blockSize) {
        acc += exp(getLogits(row, col) - rowMax);
      }
      buf[tid] = acc;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { buf[tid] = buf[tid] + buf[tid + s]; }
        workgroupBarrier();
      }
      if (tid == 0) { rowSum = buf[0]; }
      workgroupBarrier();
      for (var col = tid; col < cols; col += blockSize) {
        setOutputAtCoords(row, col, exp(getLogits(row, col) - rowMax) / rowSum);
      }
    }`,
  };
}

/** Registers the fixed Softmax kernel for the webgpu backend (replacing tfjs's). */
export function registerWebgpuSoftmax(): void {
  const reshape = tf.getKernel("Reshape", "webgpu")?.kernelFunc;
  if (!reshape) return;
  registerWebgpuKernel("Softmax", ({ inputs, backend, attrs }) => {
    const b = backend as WebgpuBackendLike;
    const logits = (inputs as { logits: tf.TensorInfo }).logits;
    const dim = (attrs as { dim: number }).dim;
    const cols = logits.shape[dim];
    const rows = tf.util.sizeFromShape(logits.shape) / cols;
    const flat = reshape({ inputs: { x: logits }, backend, attrs: { shape: [rows, cols] } }) as tf.TensorInfo;
    const res = b.runWebGPUProgram(softmaxProgram(rows, cols), [flat], logits.dtype);
    const out = reshape({ inputs: { x: res }, backend, attrs: { shape: logits.shape } }) as tf.TensorInfo;
    b.disposeData(flat.dataId);
    b.disposeData(res.dataId);
    return out;
  });
}
