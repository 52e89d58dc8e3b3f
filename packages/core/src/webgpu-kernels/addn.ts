/**
 * AddN for tfjs-backend-webgpu 4.22. Its kernel binds every input plus the output as storage buffers of one shader,
 * so adding more than maxStorageBuffersPerShaderStage - 1 tensors (16 on many adapters: e.g. the squared norms of
 * 16 LoRA matrices in a gradient clip) fails WebGPU validation and returns garbage. Here larger sums are added in
 * groups that fit, then the group sums are added (recursively), in input order.
 */
import * as tf from "@tensorflow/tfjs-core";
import type { WebgpuBackendLike } from "./program";

/** Registers the grouped AddN for the webgpu backend (keeps tfjs's kernel for sums that fit). */
export function registerWebgpuAddN(): void {
  const orig = tf.getKernel("AddN", "webgpu");
  if (!orig) return;
  const fn = orig.kernelFunc;
  const grouped: tf.KernelFunc = (args) => {
    const inputs = args.inputs as unknown as tf.TensorInfo[];
    const b = args.backend as WebgpuBackendLike;
    const max = Math.max(2, (b.device.limits.maxStorageBuffersPerShaderStage ?? 8) - 1);
    if (inputs.length <= max) return fn(args);
    const partial: tf.TensorInfo[] = [];
    for (let i = 0; i < inputs.length; i += max) {
      const group = inputs.slice(i, i + max);
      partial.push(group.length === 1 ? group[0] : (fn({ ...args, inputs: group as unknown as tf.NamedTensorInfoMap }) as tf.TensorInfo));
    }
    try {
      return grouped({ ...args, inputs: partial as unknown as tf.NamedTensorInfoMap }) as tf.TensorInfo;
    } finally {
      for (const p of partial) if (!inputs.includes(p)) b.disposeData(p.dataId);
    }
  };
  tf.unregisterKernel("AddN", "webgpu");
  tf.registerKernel({ ...orig, kernelFunc: grouped });
}
