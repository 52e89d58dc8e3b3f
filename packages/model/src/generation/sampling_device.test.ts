/**
 * Selection on the GPU (@rarl/core's RarlSampleRows) against the host sampler (`sampleRow`): the same logits and the
 * same draw give the same id, except where the host's choice lies within float32 rounding of a boundary (counted), and
 * the same raw log-prob; and generate() with a seed gives the same samples on webgpu (device selection, ids and
 * log-probs read back) as on cpu (host selection) on the tiny fixture.
 */
import { Rng, sampleRowsOnDevice, webgpuSkipReason } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "../qwen2_vl/loading";
import type { Qwen2VLForConditionalGeneration } from "../qwen2_vl/model";
import { openReference, refImagePrompt, refRows, tinyFixtureDir } from "../qwen2_vl/parity_fixture";
import { generate, type GenerateRequest } from "./generate";
import { logSumExp, type ResolvedSamplingParams, resolveSamplingParams, type SamplingParams, sampleRow } from "./sampling";
import type { TokenizedPrompt } from "./types";

const why = await webgpuSkipReason();
const suffix = why ? ` (skipped: ${why})` : "";

/** An Rng whose next draw is `u` (sampleRow takes exactly one draw per sampled row). */
function fixedDraw(u: number): Rng {
  const r = new Rng(0);
  r.random = () => u;
  return r;
}

function hostPick(row: Float32Array, u: number, p: ResolvedSamplingParams): number {
  return sampleRow(row, [], p, fixedDraw(u), new Float32Array(row.length)).token;
}

/** Float32 tolerance: a host choice that changes when the draw, top-p or min-p moves by this much is fragile. */
const TOL = 1e-5;

function fragile(row: Float32Array, u: number, p: ResolvedSamplingParams): boolean {
  const t = hostPick(row, u, p);
  for (const d of [-TOL, TOL]) {
    if (hostPick(row, Math.min(Math.max(u + d, 0), 1 - 1e-12), p) !== t) return true;
    if (p.topP < 1 && hostPick(row, u, { ...p, topP: Math.min(1, p.topP + d) }) !== t) return true;
    if (p.minP > 0 && hostPick(row, u, { ...p, minP: p.minP * Math.exp(d) }) !== t) return true;
  }
  return false;
}

describe.skipIf(why !== null)(`device selection vs the host sampler${suffix}`, () => {
  beforeAll(async () => {
    await tf.setBackend("webgpu");
  });

  const cases: Array<[string, SamplingParams]> = [
    ["greedy", { doSample: false }],
    ["greedy, suppressed ids", { doSample: false, suppressTokens: [3, 10, 77] }],
    ["plain sampling", {}],
    ["temperature 0.7 + suppressed ids (GRPO's policy)", { temperature: 0.7, suppressTokens: [3, 10, 77, 1999] }],
    ["top-k 40, temperature 1.3", { topK: 40, temperature: 1.3 }],
    ["top-p 0.8", { topP: 0.8 }],
    ["min-p 0.1, temperature 0.9", { minP: 0.1, temperature: 0.9 }],
    ["top-k 100, top-p 0.95, min-p 0.01, temperature 0.6, suppressed ids", { topK: 100, topP: 0.95, minP: 0.01, temperature: 0.6, suppressTokens: [0, 5] }],
  ];
  let flipsTotal = 0;
  let rowsTotal = 0;
  for (const [name, sp] of cases) {
    it(`${name}: ids equal sampleRow's (up to float32 boundary cases, counted), raw log-probs within 1e-5`, async () => {
      const p = resolveSamplingParams(sp);
      const B = 12;
      const V = 2000;
      const rng = new Rng(name.length * 101);
      // Rows of different sharpness, like real logits (a few dominant tokens over a long tail).
      const x = Float32Array.from({ length: B * V }, (_, i) => rng.normal() * (1 + (Math.floor(i / V) % 3)) + (i % V < 5 ? 6 : 0));
      const u = Array.from({ length: B }, () => rng.random());
      const lt = tf.tensor2d(x, [B, V]);
      const mask = new Float32Array(V).fill(1);
      for (const t of p.suppressTokens) mask[t] = 0;
      const at = p.suppressTokens.length > 0 ? tf.tensor1d(mask) : undefined;
      const n0 = tf.memory().numTensors;
      const out = sampleRowsOnDevice(lt, u, { greedy: !p.doSample, temperature: p.temperature, topK: p.topK, topP: p.topP, minP: p.minP }, at);
      const got = (await out.data()) as Float32Array;
      out.dispose();
      expect(tf.memory().numTensors).toBe(n0);
      tf.dispose([lt, ...(at ? [at] : [])]);
      let flips = 0;
      for (let r = 0; r < B; r++) {
        const row = x.subarray(r * V, (r + 1) * V);
        const host = sampleRow(row, [], p, fixedDraw(u[r]), new Float32Array(V));
        const id = got[2 * r];
        if (id !== host.token) {
          expect(fragile(row, u[r], p), `row ${r}: device ${id}, host ${host.token}`).toBe(true);
          flips++;
        }
        expect(p.suppressTokens).not.toContain(id);
        expect(Math.abs(got[2 * r + 1] - (row[id] - logSumExp(row)))).toBeLessThan(1e-5);
      }
      flipsTotal += flips;
      rowsTotal += B;
      expect(flips).toBeLessThanOrEqual(1);
    });
  }
  it("boundary flips stay rare over all cases", () => {
    expect(rowsTotal).toBe(cases.length * 12);
    expect(flipsTotal).toBeLessThanOrEqual(2);
  });
});

describe.skipIf(why !== null)(`generate() with a seed: webgpu (selection on the device) = cpu (host sampler)${suffix}`, () => {
  const models: Record<string, Qwen2VLForConditionalGeneration> = {};
  let prompts: TokenizedPrompt[];
  let before = "";
  beforeAll(async () => {
    before = tf.getBackend();
    const ref = openReference();
    prompts = [refImagePrompt(ref), { inputIds: refRows(ref, "text_only.input_ids")[0] }];
    for (const b of ["cpu", "webgpu"]) {
      await tf.setBackend(b);
      models[b] = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
    }
  }, 600_000);
  afterAll(async () => {
    for (const b of Object.keys(models)) {
      await tf.setBackend(b);
      models[b].dispose();
    }
    if (before) await tf.setBackend(before);
  });

  const requests: Array<[string, Omit<GenerateRequest, "prompts">]> = [
    ["temperature 0.8 + suppressed ids, G = 2 (GRPO's policy)", { numSamples: 2, temperature: 0.8, suppressTokens: [151655, 151652, 151653], seed: 3 }],
    ["top-k 50, top-p 0.9", { topK: 50, topP: 0.9, seed: 7 }],
    ["plain sampling, G = 3 (cpu: softmax probabilities read back)", { numSamples: 3, seed: 5 }],
    ["greedy with suppressed ids", { doSample: false, suppressTokens: [151645, 151643] }],
  ];
  for (const [name, req] of requests) {
    it(`${name}: same ids, log-probs within 1e-4; no tensor leaks on webgpu`, { timeout: 600_000 }, async () => {
      const run = async (b: string) => {
        await tf.setBackend(b);
        return generate(models[b], null, { prompts, maxNewTokens: 6, eosTokenIds: [], ...req });
      };
      const cpu = await run("cpu");
      const gpu = await run("webgpu");
      const n0 = tf.memory().numTensors;
      let again = gpu;
      const prof = await tf.profile(async () => {
        again = await run("webgpu");
        return [];
      });
      expect(tf.memory().numTensors).toBe(n0);
      // Selection ran on the device: one RarlSampleRows per step (prefill + 5 decode steps), no host softmax.
      expect(prof.kernels.filter((k) => k.name === "RarlSampleRows").length).toBe(6);
      for (const [p, samples] of cpu.samples.entries()) {
        for (const [g, s] of samples.entries()) {
          expect(gpu.samples[p][g].ids, `prompt ${p} sample ${g}`).toEqual(s.ids);
          expect(again.samples[p][g].ids).toEqual(s.ids);
          for (const [t, lp] of s.logprobs.entries()) expect(Math.abs(gpu.samples[p][g].logprobs[t] - lp)).toBeLessThan(1e-4);
        }
      }
      if (req.suppressTokens) for (const s of gpu.samples.flat()) for (const id of s.ids) expect(req.suppressTokens).not.toContain(id);
    });
  }

  it("rows whose logits exceed one storage binding are selected in groups (forced 8 MB limit, vocabulary chunks: 13 rows per call): same samples", { timeout: 600_000 }, async () => {
    const req = { prompts, maxNewTokens: 3, eosTokenIds: [], numSamples: 8, temperature: 0.9, seed: 9 };
    await tf.setBackend("webgpu");
    const whole = await generate(models.webgpu, null, req);
    const env = { RARL_WEBGPU_BINDING_LIMIT: "8000000", RARL_VOCAB_CHUNK_BYTES: "8000000" };
    Object.assign(process.env, env);
    let small: Qwen2VLForConditionalGeneration | undefined;
    try {
      small = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
      expect(small.model.vocabChunks()?.chunks.length).toBe(5);
      let grouped = whole;
      const prof = await tf.profile(async () => {
        grouped = await generate(small!, null, req);
        return [];
      });
      // 16 rows, 13 per call: 2 calls for the prefill's picks and for each of the 2 decode steps.
      expect(prof.kernels.filter((k) => k.name === "RarlSampleRows").length).toBe(6);
      expect(grouped.samples.map((p) => p.map((s) => s.ids))).toEqual(whole.samples.map((p) => p.map((s) => s.ids)));
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
      small?.dispose();
    }
  });
});
