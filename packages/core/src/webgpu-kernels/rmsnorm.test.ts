import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { relErr } from "../testing/compare";
import { webgpuSkipReason } from "../testing/webgpu";
import { fusedRmsNorm, rmsNormComposite } from "./rmsnorm";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

type Out = { y: Float32Array; dx: Float32Array; dw: Float32Array };

/** y = rmsNorm(x, w) and the gradients of sum(y · c) w.r.t. x and w (c: fixed random cotangent). */
async function run(backend: string, op: typeof fusedRmsNorm, x: Float32Array, w: Float32Array, shape: number[], eps: number): Promise<Out> {
  await tf.setBackend(backend);
  const h = shape[shape.length - 1];
  const xt = tf.tensor(x, shape);
  const wt = tf.tensor1d(w);
  const c = tf.tidy(() => tf.randomUniform(shape, -1, 1, "float32", 11));
  const y = op(xt, wt, eps);
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(op(a, b as tf.Tensor1D, eps), c)))([xt, wt]);
  expect(dw.shape).toEqual([h]);
  const out = { y: (await y.data()) as Float32Array, dx: (await dx.data()) as Float32Array, dw: (await dw.data()) as Float32Array };
  tf.dispose([xt, wt, c, y, dx, dw]);
  return out;
}

function data(shape: number[], seed: number): { x: Float32Array; w: Float32Array } {
  const rng = new Rng(seed);
  const h = shape[shape.length - 1];
  // Rows of very different scales (as hidden states grow through the layers), one row of zeros (rsqrt(eps)).
  const x = Float32Array.from({ length: tf.util.sizeFromShape(shape) }, (_, i) => rng.normal() * 10 ** ((Math.floor(i / h) % 4) - 1));
  x.fill(0, 0, h);
  const w = Float32Array.from({ length: h }, () => 1 + 0.5 * rng.normal());
  return { x, w };
}

describe("fusedRmsNorm off webgpu", () => {
  it("is the tfjs composite on cpu (same values, same gradients)", async () => {
    const { x, w } = data([3, 5, 8], 1);
    const a = await run("cpu", fusedRmsNorm, x, w, [3, 5, 8], 1e-6);
    const b = await run("cpu", rmsNormComposite, x, w, [3, 5, 8], 1e-6);
    expect(a).toEqual(b);
  });
});

describe.skipIf(why !== null)(`webgpu fused RMSNorm vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const shape of [
    [4, 7],
    [2, 3, 64],
    [5, 300],
    [2, 3, 1536],
  ]) {
    it(`[${shape}]: forward within 1e-5 and gradients (x and weight) within 1e-4 of the cpu composite`, async () => {
      const { x, w } = data(shape, shape.reduce((a, b) => a * 31 + b, 0));
      const cpu = await run("cpu", rmsNormComposite, x, w, shape, 1e-6);
      const gpu = await run("webgpu", fusedRmsNorm, x, w, shape, 1e-6);
      expect(relErr(gpu.y, cpu.y)).toBeLessThan(1e-5);
      expect(relErr(gpu.dx, cpu.dx)).toBeLessThan(1e-4);
      expect(relErr(gpu.dw, cpu.dw)).toBeLessThan(1e-4);
    });
  }

  it("runs the fused kernel on webgpu (one RarlRmsNorm kernel, no Rsqrt) and leaks no tensors across calls", async () => {
    const { x, w } = data([2, 4, 16], 5);
    await tf.setBackend("webgpu");
    const xt = tf.tensor(x, [2, 4, 16]);
    const wt = tf.tensor1d(w);
    const prof = await tf.profile(() => fusedRmsNorm(xt, wt, 1e-6));
    const names = prof.kernels.map((k) => k.name);
    expect(names).toContain("RarlRmsNorm");
    expect(names).not.toContain("Rsqrt");
    tf.dispose(prof.result as tf.Tensor);
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.dispose(fusedRmsNorm(xt, wt, 1e-6));
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(fusedRmsNorm(a, b as tf.Tensor1D, 1e-6)))([xt, wt]));
      expect(tf.memory().numTensors).toBe(n0);
    }
    tf.dispose([xt, wt]);
  });
});
