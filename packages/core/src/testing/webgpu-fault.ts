import * as tf from "@tensorflow/tfjs-core";
import { flatLayout, MAIN, type WebgpuBackendLike, type WgslProgram } from "../webgpu-kernels/program";

/**
 * Test helper: dispatches, on the active webgpu backend, a kernel named `name` whose WGSL does not compile, the way
 * a kernel bug or a device error surfaces: Dawn reports a validation error asynchronously and the kernel's output is
 * garbage. The output tensor is disposed; the next read-back rejects with a WebgpuDeviceError naming `name`.
 */
export function dispatchBrokenKernel(name = "rarl_test_broken", size = 8): void {
  const program: WgslProgram = {
    variableNames: ["x"],
    outputShape: [size],
    dispatchLayout: flatLayout(1),
    dispatch: [Math.ceil(size / 64), 1, 1],
    workgroupSize: [64, 1, 1],
    shaderKey: name,
    size: true,
    getUserCode: () => `
    ${MAIN} {
      if (index < uniforms.size) {
        setOutputAtIndex(index, getX(index) * undefinedName);
      }
    }`,
  };
  const b = tf.backend() as WebgpuBackendLike;
  const x = tf.ones([size]);
  const y = tf.engine().makeTensorFromTensorInfo(b.runWebGPUProgram(program, [x], "float32"));
  tf.dispose([x, y]);
}
