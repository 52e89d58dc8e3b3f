import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { webgpuSkipReason } from "../testing/webgpu";
import { wouldSplitK } from "./matmul";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

function randn(shape: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal());
}

async function product(backend: string, a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], tA: boolean, tB: boolean): Promise<Float32Array> {
  await tf.setBackend(backend);
  const y = tf.tidy(() => tf.matMul(tf.tensor(a, aShape), tf.tensor(b, bShape), tA, tB));
  const out = (await y.data()) as Float32Array;
  y.dispose();
  return out;
}

describe("wouldSplitK (tfjs-backend-webgpu 4.22's rule)", () => {
  it("is true for one long-K product with a small output, false for batched, short-K or large outputs", () => {
    expect(wouldSplitK([16, 151936], [151936, 64], false, false, 64)).toBe(true); // dLogits x W: the lm_head backward
    expect(wouldSplitK([16, 4000], [64, 4000], false, true, 64)).toBe(true);
    expect(wouldSplitK([2, 16, 4000], [2, 4000, 64], false, false, 64)).toBe(false); // batch 2
    expect(wouldSplitK([16, 1000], [1000, 64], false, false, 64)).toBe(false); // K < 2000
    expect(wouldSplitK([4096, 4000], [4000, 4096], false, false, 64)).toBe(false); // many workgroups
    expect(wouldSplitK([4, 4000], [4000, 8], false, false, 64)).toBe(false); // output <= 128: reduce program
  });
});

describe.skipIf(why !== null)(`webgpu deterministic matmul vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const [aShape, bShape, tA, tB] of [
    [[16, 6000], [6000, 40], false, false],
    [[6000, 16], [40, 6000], true, true],
    [[24, 5000], [40, 5000], false, true],
  ] as [number[], number[], boolean, boolean][]) {
    it(`[${aShape}]${tA ? "ᵀ" : ""} x [${bShape}]${tB ? "ᵀ" : ""} (split-K shape): matches cpu and is bit-identical over repeated runs`, async () => {
      const a = randn(aShape, 1);
      const b = randn(bShape, 2);
      const cpu = await product("cpu", a, aShape, b, bShape, tA, tB);
      const g1 = await product("webgpu", a, aShape, b, bShape, tA, tB);
      const g2 = await product("webgpu", a, aShape, b, bShape, tA, tB);
      const g3 = await product("webgpu", a, aShape, b, bShape, tA, tB);
      let worst = 0;
      for (let i = 0; i < cpu.length; i++) worst = Math.max(worst, Math.abs(g1[i] - cpu[i]) / (1 + Math.abs(cpu[i])));
      expect(worst).toBeLessThan(1e-4);
      expect(Array.from(g2)).toEqual(Array.from(g1));
      expect(Array.from(g3)).toEqual(Array.from(g1));
    });
  }
});
