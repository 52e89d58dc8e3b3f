import { initBackend, type TensorSource } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "../qwen2_vl/loading";
import type { Qwen2VLForConditionalGeneration } from "../qwen2_vl/model";
import type { Qwen2VLProcessor } from "../qwen2_vl/processor";
import { openReference, refArray, refImagePrompt, refRows, tinyFixtureDir } from "../qwen2_vl/parity_fixture";
import { InvalidGenerationParamError, SequenceTooLongError } from "./errors";
import { generate, loadGenerationConfig } from "./generate";
import type { TokenizedPrompt } from "./types";

let model: Qwen2VLForConditionalGeneration;
let processor: Qwen2VLProcessor;
let ref: TensorSource;
let imagePrompt: TokenizedPrompt;
let textPrompt: TokenizedPrompt;

beforeAll(async () => {
  await initBackend();
  const loaded = await loadQwen2VL(tinyFixtureDir());
  model = loaded.model;
  processor = loaded.processor!;
  ref = openReference();
  imagePrompt = refImagePrompt(ref);
  textPrompt = { inputIds: refRows(ref, "text_only.input_ids")[0] };
});

afterAll(() => {
  model?.dispose();
});

describe("generate on qwen2vl-tiny", () => {
  it("greedy reproduces greedy.generated_ids (16 new tokens, eos [151645, 151643])", async () => {
    const want = refRows(ref, "greedy.generated_ids")[0];
    const r = await generate(model, processor, { prompts: [imagePrompt], doSample: false, maxNewTokens: 16, eosTokenIds: [151645, 151643] });
    const s = r.samples[0][0];
    expect(s.ids).toEqual(want);
    expect(s.finishReason).toBe("length");
    // log-probs are log-softmax of the raw logits: compare with the reference's step logits / logsumexp
    const cols = refArray(ref, "logit_cols").data as number[];
    const stepCols = refArray(ref, "greedy.step_logits_cols").data as Float32Array;
    const lse = refArray(ref, "greedy.step_logsumexp").data as Float32Array;
    const C = cols.length;
    s.ids.forEach((id, t) => {
      const c = cols.indexOf(id);
      expect(Math.abs(s.logprobs[t] - (stepCols[t * C + c] - lse[t]))).toBeLessThan(1e-4);
    });
    expect(s.text).toBe(await processor.tokenizer.decode(want));
  });

  it("sampling is deterministic per seed; G samples of one prompt share a single prefill", async () => {
    const calls: number[][] = [];
    const orig = model.forward.bind(model);
    model.forward = (args) => {
      calls.push(args.inputIds.shape);
      return orig(args);
    };
    try {
      const req = { prompts: [imagePrompt], numSamples: 4, maxNewTokens: 5, seed: 11, temperature: 1.3 };
      const a = await generate(model, processor, req);
      const prefills = calls.filter((s) => s[1] > 1);
      expect(prefills).toEqual([[1, 43]]); // one prefill over the prompt, for all 4 samples
      expect(calls.filter((s) => s[1] === 1).every((s) => s[0] === 4)).toBe(true); // decode steps carry the 4 rows
      expect(a.stats.prefillCalls).toBe(1);
      const b = await generate(model, processor, req);
      const c = await generate(model, processor, { ...req, seed: 12 });
      const ids = (r: typeof a) => r.samples[0].map((x) => x.ids);
      expect(ids(b)).toEqual(ids(a));
      expect(ids(c)).not.toEqual(ids(a));
      expect(new Set(ids(a).map((x) => x.join(","))).size).toBeGreaterThan(1); // rows draw from their own streams
      for (const s of a.samples[0]) {
        expect(s.ids).toHaveLength(5);
        expect(s.logprobs.every((x) => x < 0 && Number.isFinite(x))).toBe(true);
      }
    } finally {
      model.forward = orig;
    }
  });

  it("tiled greedy rows all equal the single greedy sample; the untransposed lm_head gives the same ids", async () => {
    const one = await generate(model, null, { prompts: [textPrompt], doSample: false, maxNewTokens: 4 });
    const three = await generate(model, null, { prompts: [textPrompt], doSample: false, maxNewTokens: 4, numSamples: 3 });
    const plain = await generate(model, null, { prompts: [textPrompt], doSample: false, maxNewTokens: 4, transposedLmHead: false });
    for (const s of three.samples[0]) expect(s.ids).toEqual(one.samples[0][0].ids);
    expect(plain.samples[0][0].ids).toEqual(one.samples[0][0].ids);
    for (let t = 0; t < 4; t++) expect(Math.abs(plain.samples[0][0].logprobs[t] - one.samples[0][0].logprobs[t])).toBeLessThan(1e-4);
  });

  it("a left-padded batch of prompts generates what each prompt generates alone (greedy)", async () => {
    const bIds = refRows(ref, "batch.input_ids");
    const bMask = refRows(ref, "batch.attention_mask");
    const px = refArray(ref, "batch.pixel_values").data as Float32Array;
    const grid = refRows(ref, "batch.image_grid_thw");
    const n0 = grid[0][0] * grid[0][1] * grid[0][2];
    const second: TokenizedPrompt = {
      inputIds: bIds[1].filter((_, i) => bMask[1][i] === 1),
      pixelValues: px.slice(n0 * 1176),
      imageGridThw: [grid[1]],
    };
    const prompts = [imagePrompt, second, textPrompt]; // 43, 35 and 29 tokens
    const req = { doSample: false, maxNewTokens: 6 } as const;
    const batch = await generate(model, null, { ...req, prompts });
    for (let p = 0; p < prompts.length; p++) {
      const alone = await generate(model, null, { ...req, prompts: [prompts[p]] });
      expect(batch.samples[p][0].ids).toEqual(alone.samples[0][0].ids);
    }
  });

  it("drops finished rows from the batch without changing the live rows", async () => {
    const want = refRows(ref, "greedy.generated_ids")[0];
    const req = { doSample: false, maxNewTokens: 6, eosTokenIds: [want[2]] };
    const batch = await generate(model, null, { ...req, prompts: [imagePrompt, textPrompt], numSamples: 2 });
    expect(batch.samples[0][0].ids).toEqual(want.slice(0, 3));
    expect(batch.samples[0][1].ids).toEqual(want.slice(0, 3));
    const alone = await generate(model, null, { ...req, prompts: [textPrompt] });
    expect(alone.samples[0][0].ids.length).toBeGreaterThan(3); // the text row outlives the image rows
    for (const s of batch.samples[1]) expect(s.ids).toEqual(alone.samples[0][0].ids);
    expect(batch.stats.compactions).toBeGreaterThanOrEqual(1);
    expect(batch.stats.decodedRows).toBeLessThan(4 * batch.stats.decodeSteps);
  });

  it("stops on EOS ids and on stop strings (trimmed from the text)", async () => {
    const want = refRows(ref, "greedy.generated_ids")[0];
    const byEos = await generate(model, processor, { prompts: [imagePrompt], doSample: false, maxNewTokens: 16, eosTokenIds: [want[3]] });
    expect(byEos.samples[0][0].ids).toEqual(want.slice(0, 4));
    expect(byEos.samples[0][0].finishReason).toBe("stop");
    const full = await processor.tokenizer.decode(want);
    const at = (await processor.tokenizer.decode(want.slice(0, 6))).length;
    const stop = full.slice(at, at + 2);
    expect(stop.length).toBe(2);
    const r = await generate(model, processor, { prompts: [imagePrompt], doSample: false, maxNewTokens: 16, stopStrings: [stop] });
    const s = r.samples[0][0];
    expect(s.finishReason).toBe("stop");
    expect(s.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(s.ids).toEqual(want.slice(0, s.ids.length));
    expect(s.ids.length).toBeLessThan(16);
    expect(s.logprobs).toHaveLength(s.ids.length);
  });

  it("accepts text prompts with images through the processor (same greedy ids as the tokenized prompt)", async () => {
    const text =
      "<|im_start|>system\nYou are a Medical Assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Is there an abnormality in the left lung?<|im_end|>\n<|im_start|>assistant\n";
    const image = path.join(tinyFixtureDir(), "images", "disc_100x80.png");
    const r = await generate(model, processor, { prompts: [{ text, images: [image] }], doSample: false, maxNewTokens: 3 });
    expect(r.samples[0][0].ids).toEqual(refRows(ref, "greedy.generated_ids")[0].slice(0, 3));
  });

  it("works with host-resident weights (weightResidency \"host\"): same greedy ids", async () => {
    const hostModel = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false, weightResidency: "host" })).model;
    try {
      const r = await generate(hostModel, null, { prompts: [imagePrompt], doSample: false, maxNewTokens: 4 });
      expect(r.samples[0][0].ids).toEqual(refRows(ref, "greedy.generated_ids")[0].slice(0, 4));
    } finally {
      hostModel.dispose();
    }
  });

  it("reads eos and pad ids from generation_config.json", () => {
    expect(loadGenerationConfig(tinyFixtureDir())).toEqual({ eosTokenIds: [151645, 151643], padTokenId: 151643 });
    expect(loadGenerationConfig(path.join(tinyFixtureDir(), "images"))).toBeNull();
  });

  it("applies the repetition penalty over prompt and completion tokens", async () => {
    // unpenalised greedy repeats 124591 (steps 3 and 6 of greedy.generated_ids)
    const want = refRows(ref, "greedy.generated_ids")[0].slice(0, 7);
    expect(new Set(want).size).toBeLessThan(7);
    const r = await generate(model, null, { prompts: [imagePrompt], doSample: false, maxNewTokens: 7, repetitionPenalty: 1e4 });
    const s = r.samples[0][0];
    expect(new Set(s.ids).size).toBe(7); // nothing repeats
    expect(s.ids.some((t) => imagePrompt.inputIds.includes(t))).toBe(false); // and no prompt token comes back
    expect(s.ids.slice(0, 3)).toEqual(want.slice(0, 3)); // before the first repeat the choice is unchanged
    // the reported log-probs are those of the raw logits, not of the penalised ones
    const plain = await generate(model, null, { prompts: [imagePrompt], doSample: false, maxNewTokens: 3 });
    for (let t = 0; t < 3; t++) expect(Math.abs(s.logprobs[t] - plain.samples[0][0].logprobs[t])).toBeLessThan(1e-5);
  });

  it("never emits a suppressed id (suppressTokens): greedy takes the runner-up, with its raw log-prob", async () => {
    const want = refRows(ref, "greedy.generated_ids")[0];
    const r = await generate(model, null, { prompts: [imagePrompt], doSample: false, maxNewTokens: 1, suppressTokens: [want[0]] });
    const s = r.samples[0][0];
    expect(s.ids[0]).not.toBe(want[0]);
    const free = await generate(model, null, { prompts: [imagePrompt], doSample: false, maxNewTokens: 1 });
    expect(s.logprobs[0]).toBeLessThan(free.samples[0][0].logprobs[0]); // the runner-up, scored by the raw distribution
    const sampled = await generate(model, null, { prompts: [imagePrompt], numSamples: 4, maxNewTokens: 4, seed: 3, temperature: 0.3, suppressTokens: want.slice(0, 4) });
    for (const row of sampled.samples[0]) for (const id of row.ids) expect(want.slice(0, 4)).not.toContain(id);
  });
  it("rejects bad requests with typed errors", async () => {
    await expect(generate(model, null, { prompts: [textPrompt], maxNewTokens: 0 })).rejects.toBeInstanceOf(InvalidGenerationParamError);
    await expect(generate(model, null, { prompts: [textPrompt], temperature: 0 })).rejects.toBeInstanceOf(InvalidGenerationParamError);
    await expect(generate(model, null, { prompts: [textPrompt], topP: 0 })).rejects.toThrow(/topP/);
    await expect(generate(model, null, { prompts: [textPrompt], numSamples: 0 })).rejects.toThrow(/numSamples/);
    const max = model.config.maxPositionEmbeddings;
    const err = await generate(model, null, { prompts: [textPrompt], maxNewTokens: max - 28 }).catch((e) => e);
    expect(err).toBeInstanceOf(SequenceTooLongError);
    expect(err.details).toMatchObject({ row: 0, promptLength: 29, limit: max });
    await expect(generate(model, null, { prompts: [{ text: "hi" }] })).rejects.toThrow(/processor/);
  });

  it("keeps tf.memory().numTensors flat across 100 generate() calls", async () => {
    const req = { prompts: [textPrompt], numSamples: 2, maxNewTokens: 2, seed: 3 };
    await generate(model, null, req); // warm-up: builds the cached transposed lm_head
    const before = tf.memory().numTensors;
    // every 25th call also exercises stop-by-EOS with row compaction (2 prompts x 2 samples, rows leaving early)
    const eos = refRows(ref, "greedy.generated_ids")[0][1];
    const compacting = { prompts: [imagePrompt, textPrompt], numSamples: 2, doSample: false, maxNewTokens: 3, eosTokenIds: [eos] };
    for (let i = 0; i < 100; i++) await generate(model, null, i % 25 === 0 ? compacting : { ...req, seed: i });
    expect(tf.memory().numTensors).toBe(before);
  });
});
