import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../backend";

let probed: Promise<string | null> | null = null;

/**
 * Test helper: starts (registers) the webgpu backend once and returns null, or the reason it cannot start, so a
 * test file can `describe.skipIf(reason !== null)`. With RARL_REQUIRE_WEBGPU=1 (set by .ci/run, whose machine has
 * mesa's software adapter) a missing adapter throws instead: CI never skips the webgpu tests silently. The backend
 * that was active before is restored; tests switch with tf.setBackend("webgpu") / tf.setBackend("cpu").
 */
export function webgpuSkipReason(): Promise<string | null> {
  if (!probed) {
    probed = (async () => {
      const before = tf.getBackend();
      const env = process.env.RARL_BACKEND;
      delete process.env.RARL_BACKEND;
      try {
        await initBackend({ prefer: ["webgpu"] });
        return null;
      } catch (e) {
        if (process.env.RARL_REQUIRE_WEBGPU === "1") throw e;
        return `no webgpu adapter: ${(e as Error).message.split("\n").slice(0, 3).join(" ")}`;
      } finally {
        if (env !== undefined) process.env.RARL_BACKEND = env;
        if (before && before !== tf.getBackend()) await tf.setBackend(before);
      }
    })();
  }
  return probed;
}
