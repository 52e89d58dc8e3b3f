/**
 * Activation checkpointing (../nn/checkpoint.ts, ./checkpointed_layer.ts): gradients with `gradientCheckpointing`
 * equal those without, for LoRA (full rows and the shared-prompt path whose gradient flows through the KV cache) and
 * for full fine-tuning, on the tiny fixture; the forward value is unchanged; fewer bytes are held by the tape when
 * the backward pass starts; numTensors stays flat over repeated checkpointed steps.
 */
import { initBackend, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completionLogprobs } from "../generation/completion";
import type { TokenizedPrompt } from "../generation/types";
import { checkpoint } from "../nn/checkpoint";
import { setLoraTraining } from "../nn/linear";
import { expectCloseToScale } from "../testing/close";
import { loadQwen2VL } from "./loading";
import type { Qwen2VLForConditionalGeneration } from "./model";
import { openReference, refImagePrompt, refRows, tinyFixtureDir } from "./parity_fixture";

let model: Qwen2VLForConditionalGeneration;
let prompt: TokenizedPrompt;
let completion: number[];

beforeAll(async () => {
  await initBackend();
  model = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
  const ref = openReference();
  prompt = refImagePrompt(ref);
  completion = refRows(ref, "completion.completion_ids")[0];
});

afterAll(() => model?.dispose());

const rand = (rng: Rng, shape: number[], std: number) => tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal(0, std)), shape);

/** variableGrads of the summed completion log-probs with checkpointing on or off: value and grads (host arrays). */
function gradsOf(vars: tf.Variable[], on: boolean, sharePrompts: boolean): { value: number; grads: Float32Array[] } {
  model.gradientCheckpointing = on;
  try {
    const batch = { prompts: [prompt, prompt], completions: [completion, completion.slice(0, 5)], sharePrompts };
    const { value, grads } = tf.variableGrads(() => tf.tidy(() => tf.sum(completionLogprobs(model, batch).logprobs) as tf.Scalar), vars);
    const out = { value: value.dataSync()[0], grads: vars.map((v) => grads[v.name].dataSync() as Float32Array) };
    value.dispose();
    tf.dispose(grads);
    return out;
  } finally {
    model.gradientCheckpointing = false;
  }
}


describe("checkpoint (generic)", () => {
  it("two outputs, an input, a constant and a variable: same values and gradients as the plain block", () => {
    const rng = new Rng(3);
    const x = rand(rng, [3, 4], 1);
    const c = rand(rng, [4, 4], 1);
    const v = tf.variable(rand(rng, [4, 4], 0.5), true, "ckpt-generic-v");
    const block = (xs: tf.Tensor[], cs: tf.Tensor[]) => {
      const a = tf.tanh(tf.matMul(tf.add(xs[0], 1), v));
      return [tf.mul(a, tf.sigmoid(tf.matMul(a, cs[0]))), tf.sum(tf.square(a), 1)];
    };
    const loss = (outs: tf.Tensor[]) => tf.add(tf.sum(tf.mul(outs[0], outs[0])), tf.sum(tf.mul(outs[1], 0.3))) as tf.Scalar;
    const run = (ck: boolean) =>
      tf.tidy(() => {
        const g = tf.grads((xx: tf.Tensor) => loss(ck ? checkpoint(block, [xx], [c], [v]) : block([xx], [c])));
        const [dx] = g([x]);
        const { grads } = tf.variableGrads(() => loss(ck ? checkpoint(block, [x], [c], [v]) : block([x], [c])), [v]);
        return [dx.dataSync(), grads[v.name].dataSync(), loss(block([x], [c])).dataSync()];
      });
    const plain = run(false);
    const ck = run(true);
    expectCloseToScale([ck[0] as Float32Array, ck[1] as Float32Array], [plain[0] as Float32Array, plain[1] as Float32Array], 1e-6);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run(true);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, c, v]);
  });
});

describe("gradientCheckpointing on the tiny fixture", () => {
  it("LoRA: gradients equal those without checkpointing (full rows and shared-prompt KV path), values identical", () => {
    const rng = new Rng(11);
    const vars: tf.Variable[] = [];
    for (const [name, lin] of model.namedLinears()) {
      if (!/^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.down_proj)$/.test(name)) continue;
      const A = tf.variable(rand(rng, [4, lin.inFeatures], 0.1) as tf.Tensor2D, true, `ck-${name}.lora_A`);
      const B = tf.variable(rand(rng, [lin.outFeatures, 4], 0.1) as tf.Tensor2D, true, `ck-${name}.lora_B`);
      lin.lora = { A, B, scale: 2, dropout: 0 };
      vars.push(A, B);
    }
    try {
      expect(vars.length).toBe(20);
      for (const share of [false, true]) {
        const off = gradsOf(vars, false, share);
        const on = gradsOf(vars, true, share);
        expect(Math.abs(on.value - off.value)).toBeLessThanOrEqual(1e-6 * Math.abs(off.value));
        expectCloseToScale(on.grads, off.grads, 1e-5);
      }
      // numTensors flat over repeated checkpointed steps
      gradsOf(vars, true, true);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) gradsOf(vars, true, true);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      for (const [, lin] of model.namedLinears()) lin.lora = null;
      tf.dispose(vars);
    }
  });

  it("full fine-tuning (trainable weights, biases and RMSNorm weights): gradients equal those without checkpointing", () => {
    const vars: tf.Variable[] = [];
    const restore: Array<() => void> = [];
    let n = 0;
    for (const [name, lin] of model.namedLinears()) {
      if (!name.startsWith("model.layers.")) continue;
      const w0 = lin.weight;
      const w = tf.variable(w0, true, `ck-full-${name}-${n++}`);
      lin.setWeight(w as unknown as tf.Tensor2D, false);
      vars.push(w);
      const b0 = lin.bias;
      if (b0) {
        const b = tf.variable(b0, true, `ck-full-${name}-b-${n++}`);
        lin.bias = b as unknown as tf.Tensor1D;
        vars.push(b);
      }
      restore.push(() => {
        lin.setWeight(w0, false);
        lin.bias = b0;
      });
    }
    const layers = model.model.weights.layers;
    const norm0 = layers[1].postAttentionLayernorm;
    const nv = tf.variable(norm0, true, `ck-full-norm-${n++}`);
    layers[1].postAttentionLayernorm = nv as unknown as tf.Tensor1D;
    vars.push(nv);
    restore.push(() => {
      layers[1].postAttentionLayernorm = norm0;
    });
    try {
      const off = gradsOf(vars, false, false);
      const on = gradsOf(vars, true, false);
      expect(Math.abs(on.value - off.value)).toBeLessThanOrEqual(1e-6 * Math.abs(off.value));
      expectCloseToScale(on.grads, off.grads, 1e-5);
    } finally {
      for (const r of restore) r();
      tf.dispose(vars);
    }
  });

  it("the tape holds fewer bytes when the backward pass starts (and as many while LoRA dropout is on: no checkpoint then)", () => {
    const rng = new Rng(5);
    const vars: tf.Variable[] = [];
    for (const [name, lin] of model.namedLinears()) {
      if (!/^model\.layers\.\d+\.self_attn\.[qv]_proj$/.test(name)) continue;
      const A = tf.variable(rand(rng, [4, lin.inFeatures], 0.1) as tf.Tensor2D, true);
      const B = tf.variable(rand(rng, [lin.outFeatures, 4], 0.1) as tf.Tensor2D, true);
      lin.lora = { A, B, scale: 2, dropout: 0 };
      vars.push(A, B);
    }
    // A longer completion so that the layers' activations dominate.
    const long = Array.from({ length: 48 }, (_, i) => completion[i % completion.length]);
    const heldAtBackward = (on: boolean, dropout = false) => {
      setLoraTraining(dropout);
      for (const [, lin] of model.namedLinears()) if (lin.lora) lin.lora.dropout = dropout ? 0.5 : 0;
      model.gradientCheckpointing = on;
      let held = 0;
      const base = tf.memory().numBytes;
      const { value, grads } = tf.variableGrads(() => {
        const s = tf.tidy(() => tf.sum(completionLogprobs(model, { prompts: [prompt], completions: [long], sharePrompts: false }).logprobs) as tf.Scalar);
        held = tf.memory().numBytes - base; // the forward's intermediates are gone: what is left is the tape's
        return s;
      }, vars);
      model.gradientCheckpointing = false;
      setLoraTraining(false);
      value.dispose();
      tf.dispose(grads);
      return held;
    };
    try {
      const off = heldAtBackward(false);
      const on = heldAtBackward(true);
      expect(on).toBeLessThan(0.6 * off);
      // While LoRA dropout is active the layers are not checkpointed (unseeded masks would differ in the recomputation):
      // the tape then holds as much as without checkpointing.
      const offDrop = heldAtBackward(false, true);
      const onDrop = heldAtBackward(true, true);
      expect(onDrop).toBeGreaterThan(0.95 * offDrop);
    } finally {
      setLoraTraining(false);
      for (const [, lin] of model.namedLinears()) lin.lora = null;
      tf.dispose(vars);
    }
  });
});
