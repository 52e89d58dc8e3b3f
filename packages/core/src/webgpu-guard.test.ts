import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "./backend";
import { BackendError } from "./errors";
import { webgpuSkipReason } from "./testing/webgpu";
import { webgpuBindingLimit } from "./webgpu";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

describe.skipIf(why !== null)(`webgpu binding-size guard${why ? ` (skipped: ${why})` : ""}`, () => {
  it("a kernel input above maxStorageBufferBindingSize is a BackendError naming kernel, tensor, bytes and limit (not garbage)", async () => {
    await tf.setBackend("webgpu");
    const prev = process.env.RARL_WEBGPU_BINDING_LIMIT;
    const a = tf.ones([64, 32]); // 8192 bytes
    const b = tf.ones([32, 4]);
    try {
      process.env.RARL_WEBGPU_BINDING_LIMIT = "4096";
      expect(webgpuBindingLimit()).toBe(4096);
      const err = (() => {
        try {
          tf.matMul(a, b);
        } catch (e) {
          return e as BackendError;
        }
      })();
      expect(err).toBeInstanceOf(BackendError);
      expect(err?.code).toBe("WEBGPU_BINDING_LIMIT");
      expect(err?.message).toMatch(/input "A" of shape \[1,64,32\] \(8192 bytes\), above the adapter's maxStorageBufferBindingSize 4096 bytes/);
      expect(err?.details).toMatchObject({ bytes: 8192, limit: 4096 });
      delete process.env.RARL_WEBGPU_BINDING_LIMIT;
      const y = tf.matMul(a, b);
      expect(Array.from(await y.data()).slice(0, 2)).toEqual([32, 32]);
      y.dispose();
    } finally {
      if (prev === undefined) delete process.env.RARL_WEBGPU_BINDING_LIMIT;
      else process.env.RARL_WEBGPU_BINDING_LIMIT = prev;
      tf.dispose([a, b]);
      await tf.setBackend("cpu");
    }
  });
});
