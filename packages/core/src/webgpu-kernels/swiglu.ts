/**
 * Fused SwiGLU, the Qwen2 MLP's gate: silu(gate) · up = gate · sigmoid(gate) · up, elementwise, in float32.
 *
 * `fusedSwiglu` is the op the model calls. On the webgpu backend its forward pass is one WGSL kernel instead of
 * tfjs's three (sigmoid, two muls, with two intermediate buffers); its gradient is tf.customGrad with the analytic
 * backward in plain tfjs ops. On every other backend it is exactly the tfjs composite it replaces, autodiff included.
 */
import * as tf from "@tensorflow/tfjs-core";
import { flatLayout, MAIN, registerWebgpuKernel, type WebgpuBackendLike, type WgslProgram } from "./program";

/** Name of the fused kernel registered for the webgpu backend (inputs gate, up of one shape). */
export const SWIGLU_KERNEL = "RarlSwiglu";

/** tf.customGrad's argument (its variadic (Tensor | GradSaveFunc)[] signature rejects named parameters). */
type CustomGradientFunc = Parameters<typeof tf.customGrad>[0];

function swigluProgram(size: number): WgslProgram {
  return {
    variableNames: ["gate", "up"],
    outputShape: [size],
    dispatchLayout: flatLayout(1),
    dispatch: [Math.ceil(size / 64), 1, 1],
    workgroupSize: [64, 1, 1],
    shaderKey: "rarl_swiglu",
    size: true,
    getUserCode: () => `
    ${MAIN} {
      if (index < uniforms.size) {
        let g = getGate(index);
        let s = 1.0 / (1.0 + exp(-g));
        setOutputAtIndex(index, (g * s) * getUp(index));
      }
    }`,
  };
}

/** Registers the fused SwiGLU kernel for the webgpu backend (called when the webgpu backend is prepared). */
export function registerWebgpuSwiglu(): void {
  const reshape = tf.getKernel("Reshape", "webgpu")?.kernelFunc;
  if (!reshape) return;
  registerWebgpuKernel(SWIGLU_KERNEL, ({ inputs, backend }) => {
    const b = backend as WebgpuBackendLike;
    const { gate, up } = inputs as { gate: tf.TensorInfo; up: tf.TensorInfo };
    const size = tf.util.sizeFromShape(gate.shape);
    const g = reshape({ inputs: { x: gate }, backend, attrs: { shape: [size] } }) as tf.TensorInfo;
    const u = reshape({ inputs: { x: up }, backend, attrs: { shape: [size] } }) as tf.TensorInfo;
    const res = b.runWebGPUProgram(swigluProgram(size), [g, u], "float32");
    const out = reshape({ inputs: { x: res }, backend, attrs: { shape: gate.shape } }) as tf.TensorInfo;
    for (const t of [g, u, res]) b.disposeData(t.dataId);
    return out;
  });
}

/** The tfjs composite (what @rarl/model computed before the fused kernel; cpu/wasm still run exactly this). */
export function swigluComposite(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up));
}

/**
 * silu(gate) · up. One fused kernel on webgpu (float32 tensors of one shape), the tfjs composite elsewhere.
 * Differentiable w.r.t. both inputs on every backend.
 */
export function fusedSwiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  const fused =
    tf.getBackend() === "webgpu" &&
    tf.getKernel(SWIGLU_KERNEL, "webgpu") !== undefined &&
    gate.dtype === "float32" &&
    up.dtype === "float32" &&
    gate.size > 0 &&
    tf.util.arraysEqual(gate.shape, up.shape);
  if (!fused) return swigluComposite(gate, up);
  const f = tf.customGrad(((g: tf.Tensor, u: tf.Tensor, save: tf.GradSaveFunc) => {
    save([g, u]);
    const value = tf.engine().runKernel(SWIGLU_KERNEL, { gate: g, up: u }) as tf.Tensor;
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [gs, us] = saved;
        // s = sigmoid(g), a = dy · up:  dgate = a·s + a·g·s·(1 − s)  (as autodiff of g·s gives),  dup = dy · g·s.
        const s = tf.sigmoid(gs);
        const a = tf.mul(dy, us);
        const dg = tf.add(tf.mul(a, s), tf.mul(tf.mul(a, gs), tf.mul(s, tf.sub(1, s))));
        const du = tf.mul(dy, tf.mul(gs, s));
        return [dg, du];
      },
    };
  }) as CustomGradientFunc);
  return f(gate, up);
}
