/**
 * The slice of tfjs-backend-webgpu's program interface that @rarl/core's WGSL kernels use. tfjs assembles the shader:
 * it prepends the bindings (`result`, one read-only array per input name, `uniforms` with each input's shape and
 * `outShape`), getters `get<Name>(coords...)`, `getCoordsFromIndex`, `setOutputAtIndex` / `setOutputAtCoords`, and
 * calls `fn main(index : i32)` once per invocation (index = flat global invocation id).
 */
import * as tf from "@tensorflow/tfjs-core";

export interface WgslProgram {
  variableNames: string[];
  outputShape: number[];
  /** Which output dims map to the x/y/z dispatch axes; `{ x: [all dims] }` is a flat layout. */
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  /** Number of workgroups per axis. */
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /** Cache key of the compiled pipeline (with the input shapes/dtypes, which tfjs appends). */
  shaderKey: string;
  /** Extra uniform fields, e.g. "vocabStart : i32,"; values passed to runWebGPUProgram in order. */
  uniforms?: string;
  /** Per input, how many floats one array element holds (4: `array<vec4<f32>>`); default 1. */
  variableComponents?: number[];
  /** Whether tfjs declares `uniforms.size` (the output size) for a bounds check. */
  size?: boolean;
  getUserCode(): string;
}

/** The WebGPUBackend methods the kernels call. */
export interface WebgpuBackendLike extends tf.KernelBackend {
  runWebGPUProgram(
    program: WgslProgram,
    inputs: tf.TensorInfo[],
    outputDtype: tf.DataType,
    programDefinedUniform?: { type: "int32" | "float32" | "uint32"; data: number[] }[],
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
  disposeData(dataId: object): boolean;
  device: { limits: Record<string, number> };
}

/** `fn main(index : i32)`: the entry tfjs calls (its getMainHeaderString). */
export const MAIN = "fn main(index : i32)";

/** -FLT_MAX exactly (0xff7fffff). A WGSL literal -3.402823e+38 rounds to one ulp above it, which is the softmax bug. */
export const NEG_FLT_MAX = "bitcast<f32>(0xff7fffffu)";

/** Flat dispatch: x covers every output dim. */
export function flatLayout(rank: number): { x: number[] } {
  return { x: Array.from({ length: rank }, (_, i) => i) };
}

/**
 * Registers `kernelFunc` as the webgpu kernel `kernelName`, replacing one already registered (tfjs's, or ours from an
 * earlier call). Does nothing while tfjs-backend-webgpu has not registered its kernels (Reshape among them).
 */
export function registerWebgpuKernel(kernelName: string, kernelFunc: tf.KernelFunc): void {
  if (!tf.getKernel("Reshape", "webgpu")) return;
  if (tf.getKernel(kernelName, "webgpu")) tf.unregisterKernel(kernelName, "webgpu");
  tf.registerKernel({ kernelName, backendName: "webgpu", kernelFunc });
}
