/**
 * tokenLogprobs on webgpu, whose forward takes its log-softmax statistics from @rarl/core's fused kernel
 * (RarlLogSoftmaxGather, one per vocabulary chunk), against cpu (tfjs ops): values, entropies and gradients, over a
 * plain [V, H] weight and over VocabChunks.
 */
import { Rng, webgpuSkipReason } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VocabChunks } from "../nn/vocab_chunks";
import { tokenLogprobs } from "./token_logprobs";

const why = await webgpuSkipReason();
const suffix = why ? ` (skipped: ${why})` : "";

const N = 6;
const H = 16;
const V = 1000;
const rng = new Rng(5);
const hData = Float32Array.from({ length: N * H }, () => rng.normal());
const wData = Float32Array.from({ length: V * H }, () => rng.normal() * 0.5);
const idData = Int32Array.from({ length: N }, (_, i) => (i === 0 ? V - 1 : Math.floor(rng.random() * V)));
const up = Float32Array.from({ length: N }, () => rng.normal());

type Out = { value: Float32Array; entropy: Float32Array; grad: Float32Array; kernels: string[] };

/** Value, entropy and the gradient of Σ up·value w.r.t. h, on `backend`, with `vocabRows` rows per vocab chunk. */
async function run(backend: string, vocabRows: number | null, rowChunk?: number): Promise<Out> {
  await tf.setBackend(backend);
  const h = tf.tensor2d(hData, [N, H]);
  const w = tf.tensor2d(wData, [V, H]);
  const lm = vocabRows ? VocabChunks.fromHost(wData, [V, H], vocabRows) : w;
  const ids = tf.tensor1d(idData, "int32");
  const u = tf.tensor1d(up);
  const ent: { entropy?: tf.Tensor1D } = {};
  let value: tf.Tensor1D | undefined;
  const prof = await tf.profile(() => {
    value = tokenLogprobs(h, lm, ids, rowChunk, undefined, ent);
    return [];
  });
  const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tokenLogprobs(x as tf.Tensor2D, lm, ids, rowChunk), u)))(h);
  const out = {
    value: (await value!.data()) as Float32Array,
    entropy: (await ent.entropy!.data()) as Float32Array,
    grad: (await grad.data()) as Float32Array,
    kernels: prof.kernels.map((k) => k.name),
  };
  tf.dispose([h, w, ids, u, value!, ent.entropy!, grad]);
  if (lm instanceof VocabChunks) lm.dispose();
  return out;
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe.skipIf(why !== null)(`tokenLogprobs on webgpu (fused log-softmax + gather) vs cpu${suffix}`, () => {
  let before = "";
  beforeAll(() => {
    before = tf.getBackend();
  });
  afterAll(async () => {
    if (before) await tf.setBackend(before);
  });

  for (const [name, vocabRows, rowChunk] of [
    ["plain weight", null, undefined],
    ["plain weight, row chunks of 4", null, 4],
    ["vocabulary chunks of 300 rows (4 chunks)", 300, undefined],
  ] as const) {
    it(`${name}: log-probs and entropies within 1e-5, gradients within 1e-4 of cpu; no leak`, async () => {
      const cpu = await run("cpu", vocabRows, rowChunk);
      const gpu = await run("webgpu", vocabRows, rowChunk);
      const chunks = vocabRows ? Math.ceil(V / vocabRows) : 1;
      const rowBlocks = rowChunk ? Math.ceil(N / rowChunk) : 1;
      expect(gpu.kernels.filter((k) => k === "RarlLogSoftmaxGather").length).toBe(chunks * rowBlocks);
      expect(gpu.kernels).not.toContain("Softmax");
      expect(maxDiff(gpu.value, cpu.value)).toBeLessThan(1e-5);
      expect(maxDiff(gpu.entropy, cpu.entropy)).toBeLessThan(1e-5);
      expect(maxDiff(gpu.grad, cpu.grad)).toBeLessThan(1e-4);
      await tf.setBackend("webgpu");
      const n0 = tf.memory().numTensors;
      await run("webgpu", vocabRows, rowChunk);
      expect(tf.memory().numTensors).toBe(n0);
    });
  }
});
