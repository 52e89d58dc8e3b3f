/**
 * Fused RMSNorm (Qwen2RMSNorm): y = weight · x · rsqrt(mean(x²) + eps) over the last axis, in float32.
 *
 * `fusedRmsNorm` is the op the model calls. On the webgpu backend its forward pass is one WGSL kernel (one
 * workgroup per row: a tree reduction of x² in workgroup memory, then one scaled write per element) instead of
 * tfjs's five generic ones (square, mean, add, rsqrt, two muls); its gradient is tf.customGrad with the analytic
 * backward in plain tfjs ops. On every other backend (cpu, wasm, tensorflow) it is exactly the tfjs composite it
 * replaces, autodiff included, so those backends compute what they computed before.
 */
import * as tf from "@tensorflow/tfjs-core";
import { flatLayout, MAIN, registerWebgpuKernel, type WebgpuBackendLike, type WgslProgram } from "./program";

/** Name of the fused kernel registered for the webgpu backend (inputs x [rows, cols], weight [cols]; attr eps). */
export const RMS_NORM_KERNEL = "RarlRmsNorm";

/** tf.customGrad's argument (its variadic (Tensor | GradSaveFunc)[] signature rejects named parameters). */
type CustomGradientFunc = Parameters<typeof tf.customGrad>[0];

function rmsNormProgram(rows: number, cols: number): WgslProgram {
  const wg = cols >= 1024 ? 256 : 64;
  return {
    variableNames: ["x", "weight"],
    outputShape: [rows, cols],
    dispatchLayout: flatLayout(2),
    dispatch: [rows, 1, 1],
    workgroupSize: [wg, 1, 1],
    shaderKey: `rarl_rms_norm_${wg}`,
    uniforms: "eps : f32,",
    getUserCode: () => `
    var<workgroup> buf : array<f32, ${wg}>;
    var<workgroup> rowScale : f32;
    const blockSize = ${wg};
    ${MAIN} {
      let row = index / blockSize;
      let tid = i32(localId.x);
      let cols = uniforms.outShape[1];
      var acc = 0.0;
      for (var col = tid; col < cols; col += blockSize) {
        let v = getX(row, col);
        acc += v * v;
      }
      buf[tid] = acc;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { buf[tid] = buf[tid] + buf[tid + s]; }
        workgroupBarrier();
      }
      if (tid == 0) { rowScale = inverseSqrt(buf[0] / f32(cols) + uniforms.eps); }
      workgroupBarrier();
      for (var col = tid; col < cols; col += blockSize) {
        setOutputAtCoords(row, col, getWeight(col) * (getX(row, col) * rowScale));
      }
    }`,
  };
}

/** Registers the fused RMSNorm kernel for the webgpu backend (called when the webgpu backend is prepared). */
export function registerWebgpuRmsNorm(): void {
  const reshape = tf.getKernel("Reshape", "webgpu")?.kernelFunc;
  if (!reshape) return;
  registerWebgpuKernel(RMS_NORM_KERNEL, ({ inputs, backend, attrs }) => {
    const b = backend as WebgpuBackendLike;
    const { x, weight } = inputs as { x: tf.TensorInfo; weight: tf.TensorInfo };
    const eps = (attrs as { eps: number }).eps;
    const cols = x.shape[x.shape.length - 1];
    const rows = tf.util.sizeFromShape(x.shape) / cols;
    const flat = reshape({ inputs: { x }, backend, attrs: { shape: [rows, cols] } }) as tf.TensorInfo;
    const res = b.runWebGPUProgram(rmsNormProgram(rows, cols), [flat, weight], "float32", [{ type: "float32", data: [eps] }]);
    const out = reshape({ inputs: { x: res }, backend, attrs: { shape: x.shape } }) as tf.TensorInfo;
    b.disposeData(flat.dataId);
    b.disposeData(res.dataId);
    return out;
  });
}

/** The tfjs composite (what @rarl/model computed before the fused kernel; cpu/wasm still run exactly this). */
export function rmsNormComposite(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const variance = tf.mean(tf.square(x), -1, true);
    return tf.mul(weight, tf.mul(x, tf.rsqrt(tf.add(variance, eps))));
  });
}

function fusedApplies(x: tf.Tensor, weight: tf.Tensor): boolean {
  return (
    tf.getBackend() === "webgpu" &&
    tf.getKernel(RMS_NORM_KERNEL, "webgpu") !== undefined &&
    x.dtype === "float32" &&
    weight.dtype === "float32" &&
    x.rank >= 1 &&
    x.size > 0 &&
    weight.rank === 1 &&
    weight.shape[0] === x.shape[x.rank - 1]
  );
}

/**
 * Qwen2RMSNorm over the last axis: weight · x / sqrt(mean(x²) + eps). One fused kernel on webgpu (float32 x and a
 * 1-D weight of x's last dim), the tfjs composite elsewhere. Differentiable w.r.t. x and weight on every backend.
 */
export function fusedRmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  if (!fusedApplies(x, weight)) return rmsNormComposite(x, weight, eps);
  const f = tf.customGrad(((xi: tf.Tensor, wi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([xi, wi]);
    const value = tf.engine().runKernel(RMS_NORM_KERNEL, { x: xi, weight: wi }, { eps } as unknown as tf.NamedAttrMap) as tf.Tensor;
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, ws] = saved;
        // r = rsqrt(mean(x²) + eps), g = dy · w:  dx = r·g − x·r³·mean(g·x),  dw = Σ_rows dy · x · r.
        const r = tf.rsqrt(tf.add(tf.mean(tf.square(xs), -1, true), eps));
        const g = tf.mul(dy, ws);
        const dx = tf.sub(tf.mul(g, r), tf.mul(tf.mul(xs, tf.pow(r, 3)), tf.mean(tf.mul(g, xs), -1, true)));
        const dw = tf.reshape(tf.sum(tf.reshape(tf.mul(dy, tf.mul(xs, r)), [-1, ws.shape[0]]), 0), ws.shape);
        return [dx, dw];
      },
    };
  }) as CustomGradientFunc);
  return f(x, weight);
}
