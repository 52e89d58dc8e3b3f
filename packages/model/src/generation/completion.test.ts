import { initBackend, type TensorSource } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "../qwen2_vl/loading";
import type { Qwen2VLForConditionalGeneration } from "../qwen2_vl/model";
import { openReference, refArray, refImagePrompt, refRows, tinyFixtureDir } from "../qwen2_vl/parity_fixture";
import { completionLogprobs, completionLogprobsHost } from "./completion";
import { InvalidGenerationParamError, SequenceTooLongError } from "./errors";
import type { TokenizedPrompt } from "./types";

let model: Qwen2VLForConditionalGeneration;
let ref: TensorSource;
let imagePrompt: TokenizedPrompt;
let textPrompt: TokenizedPrompt;
let completion: number[];
let wantLogprobs: number[];

beforeAll(async () => {
  await initBackend();
  model = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
  ref = openReference();
  imagePrompt = refImagePrompt(ref);
  textPrompt = { inputIds: refRows(ref, "text_only.input_ids")[0] };
  completion = refRows(ref, "completion.completion_ids")[0];
  wantLogprobs = Array.from(refArray(ref, "completion.completion_logprobs").data as Float32Array);
});

afterAll(() => model?.dispose());

const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

describe("completionLogprobs on qwen2vl-tiny", () => {
  it("matches completion.completion_logprobs within 1e-4", () => {
    for (const transposedLmHead of [true, false]) {
      const [got] = completionLogprobsHost(model, { prompts: [imagePrompt], completions: [completion], transposedLmHead });
      expect(got).toHaveLength(12);
      expect(maxDiff(got, wantLogprobs)).toBeLessThan(1e-4);
    }
  });

  it("pads a batch (left prompts, right completions) without changing any row, and masks the padding", () => {
    const short = completion.slice(0, 5);
    let visionCalls = 0;
    const orig = model.getImageFeatures.bind(model);
    model.getImageFeatures = (pv, grid) => {
      visionCalls++;
      return orig(pv, grid);
    };
    let rows: number[][];
    try {
      rows = completionLogprobsHost(model, { prompts: [textPrompt, imagePrompt, imagePrompt], completions: [completion, short, completion] });
    } finally {
      model.getImageFeatures = orig;
    }
    expect(visionCalls).toBe(1); // both rows of the image prompt share one vision-tower pass
    // one forward over the whole rows gives the same values as the shared-prompt path (prompt once + cache)
    const calls: number[][] = [];
    const fwd = model.forward.bind(model);
    model.forward = (args) => {
      calls.push(args.inputIds.shape);
      return fwd(args);
    };
    let full: number[][];
    let shared: number[][];
    try {
      const b = { prompts: [textPrompt, imagePrompt, imagePrompt], completions: [completion, short, completion] };
      shared = completionLogprobsHost(model, b);
      expect(calls).toEqual([
        [2, 43], // the 2 distinct prompts, left-padded
        [3, 11], // 3 completions minus their last token, through the gathered cache
      ]);
      full = completionLogprobsHost(model, { ...b, sharePrompts: false });
      expect(calls[2]).toEqual([3, 43 + 12]);
    } finally {
      model.forward = fwd;
    }
    for (let b = 0; b < 3; b++) expect(maxDiff(shared[b], full[b])).toBeLessThan(1e-4);
    expect(maxDiff(rows[2], wantLogprobs)).toBeLessThan(1e-4);
    expect(maxDiff(rows[1], wantLogprobs.slice(0, 5))).toBeLessThan(1e-4);
    const [alone] = completionLogprobsHost(model, { prompts: [textPrompt], completions: [completion] });
    expect(maxDiff(rows[0], alone)).toBeLessThan(1e-4);
    const r = completionLogprobs(model, { prompts: [imagePrompt, imagePrompt], completions: [short, completion] });
    expect(r.logprobs.shape).toEqual([2, 12]);
    const mask = r.mask.arraySync();
    expect(mask[0]).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]);
    expect((r.logprobs.arraySync() as number[][])[0].slice(5).every((x) => x === 0)).toBe(true);
    tf.dispose([r.logprobs, r.mask]);
  });

  it("works with host-resident weights (weightResidency \"host\"): same log-probs", async () => {
    const hostModel = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false, weightResidency: "host" })).model;
    try {
      const [got] = completionLogprobsHost(hostModel, { prompts: [imagePrompt], completions: [completion] });
      expect(maxDiff(got, wantLogprobs)).toBeLessThan(1e-4);
      // temperature (TRL divides the logits by it): the chunked device path and the host path's explicit
      // log-softmax over full logits agree, and differ from T = 1
      const b = { prompts: [imagePrompt], completions: [completion], temperature: 0.7 };
      const [hot] = completionLogprobsHost(hostModel, b);
      const [dev] = completionLogprobsHost(model, b);
      expect(maxDiff(hot, dev)).toBeLessThan(1e-4);
      expect(maxDiff(dev, wantLogprobs)).toBeGreaterThan(1e-2);
      expect(() => completionLogprobs(model, { ...b, temperature: 0 })).toThrow(/temperature/);
    } finally {
      hostModel.dispose();
    }
  });

  it("rejects bad batches with typed errors", () => {
    expect(() => completionLogprobs(model, { prompts: [textPrompt], completions: [] })).toThrow(InvalidGenerationParamError);
    expect(() => completionLogprobs(model, { prompts: [textPrompt], completions: [[]] })).toThrow(/completions\[0\] is empty/);
    expect(() => completionLogprobs(model, { prompts: [textPrompt], completions: [[-1]] })).toThrow(/vocabulary/);
    const long = new Array(model.config.maxPositionEmbeddings).fill(13);
    expect(() => completionLogprobs(model, { prompts: [textPrompt], completions: [long] })).toThrow(SequenceTooLongError);
  });

  it("keeps tf.memory().numTensors flat across 100 log-prob calls", () => {
    const batch = { prompts: [textPrompt], completions: [completion.slice(0, 3)] };
    completionLogprobsHost(model, batch);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) completionLogprobsHost(model, batch);
    expect(tf.memory().numTensors).toBe(before);
  });
});
