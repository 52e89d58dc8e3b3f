import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { webgpuSkipReason } from "../testing/webgpu";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

/** The gradient of sum(gather(x, idx) * w) w.r.t. x: tfjs's Gather gradient is an UnsortedSegmentSum. */
async function gatherGrad(backend: string, x: Float32Array, shape: number[], idx: number[], seed: number): Promise<Float32Array> {
  await tf.setBackend(backend);
  const rng = new Rng(seed);
  const outShape = [idx.length, ...shape.slice(1)];
  const w = tf.tensor(Float32Array.from({ length: outShape.reduce((a, b) => a * b, 1) }, () => rng.normal()), outShape);
  const xt = tf.tensor(x, shape);
  const it = tf.tensor1d(idx, "int32");
  const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, it), w)))(xt);
  const out = (await g.data()) as Float32Array;
  tf.dispose([w, xt, it, g]);
  return out;
}

async function segmentSum(backend: string, x: Float32Array, shape: number[], ids: number[], numSegments: number): Promise<Float32Array> {
  await tf.setBackend(backend);
  const y = tf.tidy(() => tf.unsortedSegmentSum(tf.tensor(x, shape), tf.tensor1d(ids, "int32"), numSegments));
  const out = (await y.data()) as Float32Array;
  y.dispose();
  return out;
}

describe.skipIf(why !== null)(`webgpu UnsortedSegmentSum (gather gradient) vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  it("repeated indices (a prompt's KV rows shared by G = 8 samples): matches cpu, bit-identical over runs", async () => {
    const shape = [3, 2, 5, 8];
    const rng = new Rng(3);
    const x = Float32Array.from({ length: 240 }, () => rng.normal());
    const idx = [0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 1, 2, 2, 2, 2, 2, 0];
    const cpu = await gatherGrad("cpu", x, shape, idx, 4);
    const runs = [];
    for (let r = 0; r < 3; r++) runs.push(Array.from(await gatherGrad("webgpu", x, shape, idx, 4)));
    for (let i = 0; i < cpu.length; i++) expect(Math.abs(runs[0][i] - cpu[i])).toBeLessThan(1e-5);
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
  });

  it("direct segment sums: empty segments are 0, negative ids are dropped (as on cpu)", async () => {
    const x = Float32Array.from({ length: 6 * 3 }, (_, i) => i * 0.5 - 2);
    const ids = [3, 0, 3, -1, 0, 3];
    const cpu = await segmentSum("cpu", x, [6, 3], ids, 5);
    const gpu = await segmentSum("webgpu", x, [6, 3], ids, 5);
    expect(Array.from(gpu)).toEqual(Array.from(cpu));
    expect(Array.from(gpu.subarray(3, 6))).toEqual([0, 0, 0]);
  });
});
