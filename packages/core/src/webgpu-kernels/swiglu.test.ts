import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { relErr } from "../testing/compare";
import { webgpuSkipReason } from "../testing/webgpu";
import { fusedSwiglu, swigluComposite } from "./swiglu";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

type Out = { y: Float32Array; dg: Float32Array; du: Float32Array };

/** y = swiglu(gate, up) and the gradients of sum(y · c) w.r.t. gate and up (c: fixed random cotangent). */
async function run(backend: string, op: typeof fusedSwiglu, g: Float32Array, u: Float32Array, shape: number[]): Promise<Out> {
  await tf.setBackend(backend);
  const gt = tf.tensor(g, shape);
  const ut = tf.tensor(u, shape);
  const c = tf.tidy(() => tf.randomUniform(shape, -1, 1, "float32", 13));
  const y = op(gt, ut);
  const [dg, du] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(op(a, b), c)))([gt, ut]);
  const out = { y: (await y.data()) as Float32Array, dg: (await dg.data()) as Float32Array, du: (await du.data()) as Float32Array };
  tf.dispose([gt, ut, c, y, dg, du]);
  return out;
}

function data(n: number, seed: number): { g: Float32Array; u: Float32Array } {
  const rng = new Rng(seed);
  // Gates from saturated negative to saturated positive (sigmoid's tails), exact zeros included.
  const g = Float32Array.from({ length: n }, (_, i) => (i % 17 === 0 ? 0 : rng.normal() * (i % 3 === 0 ? 30 : 3)));
  const u = Float32Array.from({ length: n }, () => 2 * rng.normal());
  return { g, u };
}

describe("fusedSwiglu off webgpu", () => {
  it("is the tfjs composite on cpu (same values, same gradients)", async () => {
    const { g, u } = data(40, 1);
    expect(await run("cpu", fusedSwiglu, g, u, [5, 8])).toEqual(await run("cpu", swigluComposite, g, u, [5, 8]));
  });
});

describe.skipIf(why !== null)(`webgpu fused SwiGLU vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const shape of [[7], [3, 64], [2, 3, 300], [96, 130]]) {
    it(`[${shape}]: forward within 1e-5 and gradients (gate and up) within 1e-4 of the cpu composite`, async () => {
      const { g, u } = data(tf.util.sizeFromShape(shape), shape.length * 1000 + shape[0]);
      const cpu = await run("cpu", swigluComposite, g, u, shape);
      const gpu = await run("webgpu", fusedSwiglu, g, u, shape);
      expect(relErr(gpu.y, cpu.y)).toBeLessThan(1e-5);
      expect(relErr(gpu.dg, cpu.dg)).toBeLessThan(1e-4);
      expect(relErr(gpu.du, cpu.du)).toBeLessThan(1e-4);
    });
  }

  it("runs the fused kernel on webgpu (one RarlSwiglu kernel, no Sigmoid) and leaks no tensors across calls", async () => {
    const { g, u } = data(60, 5);
    await tf.setBackend("webgpu");
    const gt = tf.tensor(g, [6, 10]);
    const ut = tf.tensor(u, [6, 10]);
    const prof = await tf.profile(() => fusedSwiglu(gt, ut));
    const names = prof.kernels.map((k) => k.name);
    expect(names).toContain("RarlSwiglu");
    expect(names).not.toContain("Sigmoid");
    tf.dispose(prof.result as tf.Tensor);
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.dispose(fusedSwiglu(gt, ut));
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(fusedSwiglu(a, b)))([gt, ut]));
      expect(tf.memory().numTensors).toBe(n0);
    }
    tf.dispose([gt, ut]);
  });
});
