// A process for the webgpu fault tests (`node --import tsx webgpu-fault-child.ts <mode>`): starts webgpu, then
// "kernel": runs a kernel whose WGSL does not compile and reads its output; "lost": starts a read and destroys the
// device while it is in flight. Prints "caught <class> <code>" and sets exit code 3, leaving the process to end on
// its own (the test asserts it does, i.e. nothing keeps it alive after a device error).
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../backend";
import type { WebgpuBackendLike } from "../webgpu-kernels/program";
import { dispatchBrokenKernel } from "./webgpu-fault";

const mode = process.argv[2];
await initBackend({ prefer: ["webgpu"] });
const b = tf.backend() as WebgpuBackendLike & { device: { destroy(): void } };
const x = tf.ones([8]);
if (mode === "kernel") dispatchBrokenKernel("rarl_child_broken");
const y = mode === "kernel" ? tf.add(x, 1) : tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]));
const read = y.data();
if (mode === "lost") b.device.destroy();
try {
  await read;
  console.log("read returned");
} catch (e) {
  const err = e as { constructor: { name: string }; code?: string; message: string };
  console.log(`caught ${err.constructor.name} ${err.code ?? "-"} ${err.message.split("\n")[0]}`);
  process.exitCode = 3;
}
