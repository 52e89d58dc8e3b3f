import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { webgpuSkipReason } from "../testing/webgpu";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

async function sumOf(backend: string, parts: Float32Array[], shape: number[]): Promise<Float32Array> {
  await tf.setBackend(backend);
  const ts = parts.map((p) => tf.tensor(p, shape));
  const y = tf.addN(ts);
  const out = (await y.data()) as Float32Array;
  tf.dispose([...ts, y]);
  return out;
}

describe.skipIf(why !== null)(`webgpu AddN vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const n of [2, 15, 16, 17, 40]) {
    it(`${n} tensors (more than maxStorageBuffersPerShaderStage - 1 are added in groups): matches cpu, no leak`, async () => {
      const rng = new Rng(n);
      const parts = Array.from({ length: n }, () => Float32Array.from({ length: 30 }, () => rng.normal()));
      const cpu = await sumOf("cpu", parts, [5, 6]);
      await tf.setBackend("webgpu");
      const n0 = tf.memory().numTensors;
      const gpu = await sumOf("webgpu", parts, [5, 6]);
      expect(tf.memory().numTensors).toBe(n0);
      for (let i = 0; i < cpu.length; i++) expect(Math.abs(gpu[i] - cpu[i])).toBeLessThan(1e-5);
    });
  }
});
