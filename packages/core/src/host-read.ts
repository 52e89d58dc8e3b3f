import type * as tf from "@tensorflow/tfjs-core";

/**
 * Downloads the values of each tensor to the host (asynchronously). Backends cache what they read, so later
 * synchronous reads (`dataSync`, `arraySync`) of these tensors return at once. On webgpu in Node there is no
 * synchronous read-back at all (tfjs's readSync needs a browser's OffscreenCanvas), so code that must read
 * synchronously (a checkpoint writer, a sync API) awaits this first. On cpu/wasm/tensorflow it costs nothing extra.
 * On webgpu, after a device error (validation, out-of-memory, a lost device) it rejects with a WebgpuDeviceError
 * instead of returning garbage, so a checkpoint is never written from a failed step (see webgpu-faults.ts).
 */
export async function readToHost(tensors: readonly tf.Tensor[]): Promise<void> {
  await Promise.all(tensors.map((t) => t.data()));
}
