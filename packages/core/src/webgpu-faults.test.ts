import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "./backend";
import { GpuMemoryError, WebgpuDeviceError } from "./errors";
import { readToHost } from "./host-read";
import { webgpuSkipReason } from "./testing/webgpu";
import { dispatchBrokenKernel } from "./testing/webgpu-fault";
import { webgpuDeviceErrorCount } from "./webgpu";
import { clearWebgpuDeviceFault, deviceFaultError, sizesInDawnMessage, WebgpuUploadChecks, webgpuDeviceFault } from "./webgpu-faults";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

describe("Dawn error messages", () => {
  it("reads the size asked for and the limit out of Dawn's wording", () => {
    expect(sizesInDawnMessage("Buffer size (2147483652) exceeds the max buffer size limit (2147483648).\n - While calling [Device].CreateBuffer")).toEqual({
      askedBytes: 2147483652,
      limitBytes: 2147483648,
    });
    expect(sizesInDawnMessage("Binding size (268435456) is larger than the maximum storage buffer binding size (134217728).")).toEqual({
      askedBytes: 268435456,
      limitBytes: 134217728,
    });
    expect(sizesInDawnMessage("Invalid ShaderModule (unlabeled).")).toEqual({});
  });

  it("a lost device is code WEBGPU_DEVICE_LOST with the reason; a validation error names both sizes", () => {
    const lost = deviceFaultError("lost", "GPU hung", { maxBufferSize: 8, maxStorageBufferBindingSize: 4 }, { reason: "unknown" });
    expect(lost).toBeInstanceOf(WebgpuDeviceError);
    expect(lost.code).toBe("WEBGPU_DEVICE_LOST");
    expect(lost.message).toMatch(/device was lost \(reason "unknown"\): GPU hung \(bytes asked: not in the message; the device's maxBufferSize is 8/);
    const v = deviceFaultError("GPUValidationError", "Buffer size (12) exceeds the max buffer size limit (8).", { maxBufferSize: 8 });
    expect(v.code).toBe("WEBGPU_VALIDATION");
    expect(v.message).toMatch(/12 bytes asked for, limit 8 bytes/);
    expect(v.details).toMatchObject({ askedBytes: 12, limitBytes: 8, kind: "GPUValidationError" });
  });
});

describe.skipIf(why !== null)(`webgpu device errors${why ? ` (skipped: ${why})` : ""}`, () => {
  it("a validation error inside a kernel makes the next read-back reject with a WebgpuDeviceError naming the kernel (no garbage, no hang); after clearing, work goes on", async () => {
    await tf.setBackend("webgpu");
    const before = tf.memory().numTensors;
    const errorsBefore = webgpuDeviceErrorCount();
    const x = tf.ones([8]);
    try {
      dispatchBrokenKernel("rarl_test_broken", 8);
      const y = tf.add(x, 2);
      const err = await y.data().then(
        () => null,
        (e) => e as WebgpuDeviceError,
      );
      expect(err).toBeInstanceOf(WebgpuDeviceError);
      expect(err?.code).toBe("WEBGPU_VALIDATION");
      expect(err?.message).toMatch(/while compiling kernel "rarl_test_broken" \(output \[8\], 32 bytes\)/);
      expect(err?.message).toMatch(/unresolved value 'undefinedName'/);
      expect(err?.details).toMatchObject({ kind: "GPUValidationError", kernel: "rarl_test_broken", kernelOutputBytes: 32, compiling: true });
      expect(webgpuDeviceErrorCount()).toBeGreaterThan(errorsBefore);
      // Sticky: an unrelated read-back after the error rejects too (its inputs may be garbage).
      const z = tf.add(x, 1);
      await expect(readToHost([z])).rejects.toBe(err);
      expect(webgpuDeviceFault()).toBe(err);
      tf.dispose([y, z]);
      expect(await clearWebgpuDeviceFault()).toBe(err);
      const w = tf.mul(x, 3);
      expect(Array.from(await w.data())).toEqual(new Array(8).fill(3));
      w.dispose();
    } finally {
      await clearWebgpuDeviceFault();
      x.dispose();
      await tf.setBackend("cpu");
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it("a GPU buffer the device refuses while kernels run (above maxBufferSize) rejects the next read with the bytes asked for, the limit and the kernel", async () => {
    await tf.setBackend("webgpu");
    const x = tf.ones([4, 4]);
    const y = tf.matMul(x, x); // runs on the GPU (small elementwise ops on host-resident inputs run on the CPU)
    try {
      const dev = (tf.backend() as unknown as { device: { createBuffer(d: { size: number; usage: number }): { destroy(): void }; limits: Record<string, number> } }).device;
      const limit = dev.limits.maxBufferSize;
      dev.createBuffer({ size: limit + 4, usage: 0x80 /* STORAGE */ }).destroy(); // as tfjs's buffer manager would ask
      const err = await y.data().then(
        () => null,
        (e) => e as WebgpuDeviceError,
      );
      expect(err).toBeInstanceOf(WebgpuDeviceError);
      expect(err?.code).toBe("WEBGPU_VALIDATION");
      expect(err?.details).toMatchObject({ askedBytes: limit + 4, limitBytes: limit, allocating: true });
      expect(err?.details.kernel).not.toBe("rarl_test_broken"); // the matMul's, dispatched last
      expect(err?.message).toMatch(new RegExp(`${limit + 4} bytes asked for, limit ${limit} bytes; while allocating a GPU buffer of ${limit + 4} bytes for kernel "${err?.details.kernel}" \\(output \\[1,4,4\\], 64 bytes\\)`));
    } finally {
      await clearWebgpuDeviceFault();
      tf.dispose([x, y]);
      await tf.setBackend("cpu");
    }
  });

  it("a weight upload the device refuses (a buffer above maxBufferSize) is a GpuMemoryError naming the tensor, its bytes and the limit", async () => {
    await tf.setBackend("webgpu");
    const b = tf.backend() as unknown as { device: { createBuffer: (d: { size: number }) => unknown; limits: Record<string, number> } };
    const limit = b.device.limits.maxBufferSize;
    const create = b.device.createBuffer;
    const w = tf.ones([16]);
    const ok = tf.ones([4]);
    try {
      const checks = new WebgpuUploadChecks();
      // While the next upload creates its buffer, one more buffer of maxBufferSize + 4 bytes is asked for: Dawn's
      // real validation error inside that upload's scopes (tfjs's own buffer stays valid, so it can be disposed).
      b.device.createBuffer = function (this: unknown, d: { size: number }) {
        b.device.createBuffer = create;
        (create.call(this, { ...d, size: limit + 4, mappedAtCreation: false }) as { destroy(): void }).destroy();
        return create.call(this, d);
      };
      checks.upload("model.layers.0.mlp.up_proj.weight", w);
      checks.upload("model.norm.weight", ok);
      const err = await checks.done().then(
        () => null,
        (e) => e as GpuMemoryError,
      );
      expect(err).toBeInstanceOf(GpuMemoryError);
      expect(err?.code).toBe("WEBGPU_UPLOAD_VALIDATION");
      expect(err?.message).toMatch(/uploading "model\.layers\.0\.mlp\.up_proj\.weight" \(64 bytes\) failed with GPUValidationError: .*exceeds the max buffer size limit/);
      expect(err?.details).toMatchObject({ tensor: "model.layers.0.mlp.up_proj.weight", bytes: 64, limit });
      // Captured by the scope: no device fault, reads of other tensors still work.
      expect(webgpuDeviceFault()).toBeNull();
      expect(Array.from(await ok.data())).toEqual([1, 1, 1, 1]);
    } finally {
      b.device.createBuffer = create;
      tf.dispose([w, ok]);
      await clearWebgpuDeviceFault();
      await tf.setBackend("cpu");
    }
  });
});

describe.skipIf(why !== null)(`webgpu device errors end a process cleanly${why ? ` (skipped: ${why})` : ""}`, () => {
  const child = fileURLToPath(new URL("./testing/webgpu-fault-child.ts", import.meta.url));
  const run = (mode: string) => spawnSync(process.execPath, ["--import", "tsx", child, mode], { encoding: "utf8", timeout: 60_000, env: { ...process.env, RARL_BACKEND: "webgpu", RARL_LOG_LEVEL: "error" } });

  it("a kernel's validation error: the read rejects with WebgpuDeviceError and the process ends on its own with the code it set", () => {
    const r = run("kernel");
    expect(r.signal, r.stderr).toBeNull(); // not killed by the timeout: no hang
    expect(r.stdout).toMatch(/caught WebgpuDeviceError WEBGPU_VALIDATION webgpu: the WebGPU device reported a GPUValidationError/);
    expect(r.stdout).toMatch(/"rarl_child_broken"/);
    expect(r.status).toBe(3);
  });

  it("a device lost while a read is in flight: the read rejects with WEBGPU_DEVICE_LOST instead of hanging", () => {
    const r = run("lost");
    expect(r.signal, r.stderr).toBeNull();
    expect(r.stdout).toMatch(/caught WebgpuDeviceError WEBGPU_DEVICE_LOST webgpu: the WebGPU device was lost \(reason "destroyed"\)/);
    expect(r.status).toBe(3);
  });
});
