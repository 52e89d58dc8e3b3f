/**
 * d(sum of completion log-probs)/d(LoRA A, B) through tfjs autodiff (completionLogprobs' custom-gradient log-softmax
 * included) against central finite differences on the tiny fixture, in float32.
 * LoRA variables are attached straight to the model's Linear.lora slots (the LoRA module's own attach is tested
 * beside it); B is nonzero so that the gradient w.r.t. A is not trivially zero.
 */
import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "../qwen2_vl/loading";
import type { Qwen2VLForConditionalGeneration } from "../qwen2_vl/model";
import { openReference, refImagePrompt, refRows, tinyFixtureDir } from "../qwen2_vl/parity_fixture";
import { completionLogprobs } from "./completion";
import type { TokenizedPrompt } from "./types";

let model: Qwen2VLForConditionalGeneration;
let prompt: TokenizedPrompt;
let completion: number[];
const vars: Array<{ name: string; v: tf.Variable }> = [];

beforeAll(async () => {
  await initBackend();
  model = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
  const ref = openReference();
  prompt = refImagePrompt(ref);
  completion = refRows(ref, "completion.completion_ids")[0];
  const rng = new Rng(7);
  const r = 4;
  for (const [name, lin] of model.namedLinears()) {
    if (!/^model\.layers\.\d+\.self_attn\.[qkvo]_proj$/.test(name)) continue;
    const rand = (shape: [number, number], std: number) => tf.tensor2d(Float32Array.from({ length: shape[0] * shape[1] }, () => rng.normal(0, std)), shape);
    const A = tf.variable(rand([r, lin.inFeatures], 0.1), true, `${name}.lora_A`);
    const B = tf.variable(rand([lin.outFeatures, r], 0.1), true, `${name}.lora_B`);
    lin.lora = { A, B, scale: 2, dropout: 0 };
    vars.push({ name: `${name}.lora_A`, v: A }, { name: `${name}.lora_B`, v: B });
  }
});

afterAll(() => {
  for (const [, lin] of model.namedLinears()) lin.lora = null;
  for (const { v } of vars) v.dispose();
  model?.dispose();
});

const objective = () => tf.tidy(() => tf.sum(completionLogprobs(model, { prompts: [prompt], completions: [completion] }).logprobs) as tf.Scalar);

function setEntry(v: tf.Variable, flat: number, value: number): void {
  const data = v.dataSync().slice() as Float32Array;
  data[flat] = value;
  v.assign(tf.tensor(data, v.shape));
}

describe("gradients of completion log-probs w.r.t. LoRA weights", () => {
  it("autodiff matches central finite differences (relative error < 1e-2)", () => {
    expect(vars.length).toBe(16); // q,k,v,o x 2 layers x (A, B)
    const trainable = vars.map((x) => x.v);
    const { value, grads } = tf.variableGrads(objective, trainable);
    value.dispose();
    // every LoRA variable gets a gradient, and a nonzero one
    for (const { v } of vars) expect(tf.tidy(() => tf.max(tf.abs(grads[v.name])).dataSync()[0])).toBeGreaterThan(0);
    // Check 8 entries: for A and B of q/k/v/o (layer 0 for q,v; layer 1 for k,o), the entry with the largest |grad|.
    const picked = vars.filter(({ name }) => /layers\.0\.self_attn\.[qv]_proj|layers\.1\.self_attn\.[ko]_proj/.test(name));
    expect(picked).toHaveLength(8);
    const eps = 5e-2;
    const rel: number[] = [];
    for (const { v } of picked) {
      const g = grads[v.name].dataSync();
      let at = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[at])) at = i;
      const x0 = v.dataSync()[at];
      setEntry(v, at, x0 + eps);
      const fp = objective();
      setEntry(v, at, x0 - eps);
      const fm = objective();
      setEntry(v, at, x0);
      const fd = (fp.dataSync()[0] - fm.dataSync()[0]) / (2 * eps);
      tf.dispose([fp, fm]);
      rel.push(Math.abs(fd - g[at]) / Math.max(Math.abs(fd), Math.abs(g[at])));
    }
    tf.dispose(grads);
    for (const r of rel) expect(r).toBeLessThan(1e-2);
  });

  it("the shared-prompt path (prompt once, gradient through the gathered KV cache) gives the full-row path's gradients", () => {
    const trainable = vars.map((x) => x.v);
    const batch = { prompts: [prompt, prompt], completions: [completion, completion.slice(0, 5)] };
    const run = (sharePrompts: boolean) =>
      tf.variableGrads(() => tf.tidy(() => tf.sum(completionLogprobs(model, { ...batch, sharePrompts }).logprobs) as tf.Scalar), trainable);
    const a = run(true);
    const b = run(false);
    for (const { v } of vars) {
      const [ga, gb] = [a.grads[v.name], b.grads[v.name]];
      const diff = tf.tidy(() => tf.max(tf.abs(tf.sub(ga, gb))).dataSync()[0]);
      const scale = tf.tidy(() => tf.max(tf.abs(gb)).dataSync()[0]);
      expect(diff).toBeLessThan(1e-3 * Math.max(1, scale));
    }
    expect(Math.abs(a.value.dataSync()[0] - b.value.dataSync()[0])).toBeLessThan(1e-3);
    tf.dispose([a.value, b.value]);
    tf.dispose(a.grads);
    tf.dispose(b.grads);
  });
});
