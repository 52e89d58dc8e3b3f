import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { webgpuSkipReason } from "../testing/webgpu";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();
const MASK_MIN = -3.4028234663852886e38;

function input(rows: number, cols: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const x = Float32Array.from({ length: rows * cols }, () => 3 * rng.normal());
  // Row 0 fully masked (a padding query row), row 1 half masked, as the additive attention mask makes them.
  for (let j = 0; j < cols; j++) x[j] += MASK_MIN;
  for (let j = cols >> 1; j < cols; j++) x[cols + j] += MASK_MIN;
  return x;
}

async function softmaxAndGrad(backend: string, x: Float32Array, shape: number[]): Promise<{ y: Float32Array; g: Float32Array }> {
  await tf.setBackend(backend);
  const w = tf.tidy(() => tf.randomUniform(shape, -1, 1, "float32", 7));
  const xt = tf.tensor(x, shape);
  const y = tf.softmax(xt);
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.softmax(t), w)))(xt);
  const out = { y: (await y.data()) as Float32Array, g: (await g.data()) as Float32Array };
  tf.dispose([w, xt, y, g]);
  return out;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Number.isNaN(a[i]) || Number.isNaN(b[i]) ? Number.POSITIVE_INFINITY : Math.abs(a[i] - b[i]));
  return m;
}

describe.skipIf(why !== null)(`webgpu Softmax kernel vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const [rows, cols] of [
    [4, 7],
    [3, 64],
    [5, 300],
    [2, 5000],
  ]) {
    it(`[${rows}, ${cols}]: values and gradient match cpu, masked rows included (uniform, not NaN)`, async () => {
      const x = input(rows, cols, rows * 100 + cols);
      const cpu = await softmaxAndGrad("cpu", x, [rows, cols]);
      const gpu = await softmaxAndGrad("webgpu", x, [rows, cols]);
      expect(cpu.y[0]).toBeCloseTo(1 / cols, 6); // fully masked row is uniform on cpu
      expect(maxDiff(gpu.y, cpu.y)).toBeLessThan(1e-6);
      expect(maxDiff(gpu.g, cpu.g)).toBeLessThan(1e-6);
    });
  }

  it("softmax over a middle axis (4-D attention scores) matches cpu, and leaks no tensors", async () => {
    const x = input(2 * 3 * 5, 6, 9);
    const cpu = await softmaxAndGrad("cpu", x, [2, 3, 5, 6]);
    await tf.setBackend("webgpu");
    const n0 = tf.memory().numTensors;
    const gpu = await softmaxAndGrad("webgpu", x, [2, 3, 5, 6]);
    await softmaxAndGrad("webgpu", x, [2, 3, 5, 6]);
    expect(tf.memory().numTensors).toBe(n0);
    expect(maxDiff(gpu.y, cpu.y)).toBeLessThan(1e-6);
  });
});
