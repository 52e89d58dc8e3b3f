import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { initBackend, openSafetensors, Rng, writeSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completionLogprobsHost } from "../generation/completion";
import { loadQwen2VL } from "../qwen2_vl/loading";
import type { Qwen2VLForConditionalGeneration } from "../qwen2_vl/model";
import { openReference, runCase, tinyFixtureDir } from "../qwen2_vl/parity_fixture";
import { LoraError, loraScale, matchesTarget, resolveLoraConfig } from "./config";
import { applyLora, kaimingUniformA, loadAdapter, removeLora } from "./lora";

const FX = tinyFixtureDir();
const LORA_DIR = path.join(FX, "lora");
let model: Qwen2VLForConditionalGeneration;
const ref = openReference();
const tmpDirs: string[] = [];
const tmp = () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "lora-test-"));
  tmpDirs.push(d);
  return d;
};

beforeAll(async () => {
  await initBackend();
  model = (await loadQwen2VL(FX, { loadProcessor: false })).model;
});
afterAll(() => {
  removeLora(model);
  model?.dispose();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Full-vocab logits of text_only (no image: fast). */
function textLogits(): Float32Array {
  const ids = ref.read("text_only.input_ids");
  const x = tf.tensor2d(Array.from(ids.data as BigInt64Array, Number), ids.shape as [number, number], "int32");
  const out = model.forward({ inputIds: x });
  const data = out.logits.dataSync() as Float32Array;
  out.logits.dispose();
  x.dispose();
  return data.slice();
}
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe("LoraConfig", () => {
  it("defaults to the language model's q/k/v/o, r 8, alpha 16; rsLoRA scales by alpha/sqrt(r)", () => {
    const c = resolveLoraConfig();
    expect([c.r, c.lora_alpha, c.target_modules]).toEqual([8, 16, ["q_proj", "k_proj", "v_proj", "o_proj"]]);
    expect(loraScale(c)).toBe(2);
    expect(loraScale({ ...c, use_rslora: true })).toBeCloseTo(16 / Math.sqrt(8), 12);
    expect(() => resolveLoraConfig({ r: 0 })).toThrow(LoraError);
    expect(() => resolveLoraConfig({ lora_dropout: 1 })).toThrow(/lora_dropout/);
  });
  it("matches PEFT-style suffixes; vision modules only when named under visual.", () => {
    const d = resolveLoraConfig().target_modules;
    expect(matchesTarget("model.layers.3.self_attn.q_proj", d)).toBe(true);
    expect(matchesTarget("model.layers.3.mlp.up_proj", d)).toBe(false);
    expect(matchesTarget("visual.blocks.0.attn.proj", ["proj"])).toBe(false);
    expect(matchesTarget("visual.blocks.0.attn.qkv", ["visual.blocks.0.attn.qkv"])).toBe(true);
    expect(matchesTarget("model.layers.1.mlp.down_proj", ".*layers\\.1\\.mlp.*")).toBe(true);
  });
  it("A init is PEFT's kaiming_uniform(a=sqrt 5): U(-1/sqrt(in), 1/sqrt(in))", () => {
    const a = kaimingUniformA(64, 256, new Rng(1));
    const b = 1 / 16;
    expect(a.every((v) => Math.abs(v) <= b)).toBe(true);
    const variance = a.reduce((s, v) => s + v * v, 0) / a.length;
    expect(variance).toBeCloseTo((b * b) / 3, 4);
  });
});

describe("LoRA on the tiny Qwen2-VL", () => {
  it("applyLora attaches A, B only to the targets; B = 0 leaves the logits unchanged; only LoRA weights are trainable", () => {
    const before = textLogits();
    const n0 = tf.memory().numTensors;
    const ad = applyLora(model, { r: 4 }, new Rng(0));
    expect([...ad.modules.keys()]).toEqual([0, 1].flatMap((i) => ["q_proj", "k_proj", "v_proj", "o_proj"].map((p) => `model.layers.${i}.self_attn.${p}`)));
    expect(ad.trainableVariables()).toHaveLength(16);
    const trainable = Object.values(tf.engine().registeredVariables).filter((v) => v.trainable);
    expect(new Set(trainable)).toEqual(new Set(ad.trainableVariables()));
    expect(maxDiff(textLogits(), before)).toBe(0);
    // gradients flow into A and B only
    const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], "int32");
    const { value, grads } = tf.variableGrads(() => {
      const o = model.forward({ inputIds: ids });
      return tf.mean(tf.square(o.logits)) as tf.Scalar;
    }, ad.trainableVariables());
    expect(Object.keys(grads)).toHaveLength(16);
    const bGrad = grads[ad.trainableVariables()[1].name];
    expect(tf.tidy(() => tf.max(tf.abs(bGrad)).dataSync()[0])).toBeGreaterThan(0);
    value.dispose();
    tf.dispose(Object.values(grads));
    ids.dispose();
    ad.remove();
    expect(tf.memory().numTensors).toBe(n0);
    expect(() => applyLora(model, { target_modules: ["nope"] }, new Rng(0))).toThrow(/match no Linear/);
    // vision modules are opt-in, by visual.* names
    const vis = applyLora(model, { target_modules: ["visual.blocks.1.attn.qkv", "q_proj"], use_rslora: true }, new Rng(0));
    expect([...vis.modules.keys()].sort()).toEqual(["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "visual.blocks.1.attn.qkv"]);
    expect(vis.modules.get("visual.blocks.1.attn.qkv")!.lora!.scale).toBeCloseTo(16 / Math.sqrt(8), 12);
    vis.remove();
    expect(tf.memory().numTensors).toBe(n0);
  });

  it("loading the fixture adapter reproduces lora_image_prompt (logits 1e-4, hidden 1e-3) and lora_completion log-probs (1e-4)", () => {
    loadAdapter(model, LORA_DIR);
    const d = runCase(model, ref, "lora_image_prompt");
    expect(d.logits_cols).toBeLessThan(1e-4);
    expect(d.logits_last).toBeLessThan(1e-4);
    expect(d.logsumexp).toBeLessThan(1e-4);
    expect(d.hidden_states).toBeLessThan(1e-3);
    expect(d.top_ids).toBe(0);
    // lora_completion: teacher-forced log-probs of the completion after image_prompt
    const ids = Array.from(ref.read("lora_completion.input_ids").data as BigInt64Array, Number);
    const comp = Array.from(ref.read("lora_completion.completion_ids").data as BigInt64Array, Number);
    const pv = ref.read("image_prompt.pixel_values");
    const grid = [Array.from(ref.read("image_prompt.image_grid_thw").data as BigInt64Array, Number)];
    const lp = completionLogprobsHost(model, {
      prompts: [{ inputIds: ids.slice(0, ids.length - comp.length), pixelValues: pv.data as Float32Array, imageGridThw: grid }],
      completions: [comp],
    })[0];
    const want = ref.read("lora_completion.completion_logprobs").data as Float32Array;
    expect(Math.max(...lp.map((v, i) => Math.abs(v - want[i])))).toBeLessThan(1e-4);
    removeLora(model);
  });

  it("disabled adapter = base model; merged = unmerged within 1e-5; unmerge restores the base", async () => {
    const base = textLogits();
    const ad = loadAdapter(model, LORA_DIR);
    const withLora = textLogits();
    expect(maxDiff(withLora, base)).toBeGreaterThan(1e-2);
    expect(maxDiff(ad.withAdapterDisabled(() => textLogits()), base)).toBe(0);
    // async scope: disabled inside, re-enabled after
    const inside = await ad.withAdapterDisabled(async () => {
      await Promise.resolve();
      return textLogits();
    });
    expect(maxDiff(inside, base)).toBe(0);
    expect(maxDiff(textLogits(), withLora)).toBe(0);
    ad.merge();
    expect(maxDiff(textLogits(), withLora)).toBeLessThan(1e-5);
    expect(() => ad.withAdapterDisabled(() => 0)).toThrow(/merged/);
    ad.unmerge();
    expect(maxDiff(textLogits(), withLora)).toBeLessThan(1e-5);
    expect(maxDiff(ad.withAdapterDisabled(() => textLogits()), base)).toBeLessThan(1e-5);
    ad.remove();
    expect(maxDiff(textLogits(), base)).toBeLessThan(1e-5);
  });

  it("save + reload is bit-identical, in PEFT's key naming and config", () => {
    const ad = loadAdapter(model, LORA_DIR);
    const dir = tmp();
    ad.save(dir);
    const fixtureW = openSafetensors(path.join(LORA_DIR, "adapter_model.safetensors"));
    const saved = openSafetensors(path.join(dir, "adapter_model.safetensors"));
    expect(saved.keys()).toEqual(fixtureW.keys());
    for (const k of saved.keys()) {
      expect(saved.info(k).dtype).toBe("F32");
      expect(Buffer.from(saved.readRaw(k)).equals(Buffer.from(fixtureW.readRaw(k))), k).toBe(true);
    }
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, "adapter_config.json"), "utf8"));
    const want = JSON.parse(fs.readFileSync(path.join(LORA_DIR, "adapter_config.json"), "utf8"));
    for (const k of ["peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules", "bias", "use_rslora", "fan_in_fan_out", "modules_to_save", "use_dora"]) {
      expect(cfg[k], k).toEqual(want[k]);
    }
    expect(Object.keys(cfg).sort()).toEqual(Object.keys(want).sort());
    removeLora(model);
    const again = loadAdapter(model, dir);
    const dir2 = tmp();
    again.save(dir2);
    expect(fs.readFileSync(path.join(dir2, "adapter_model.safetensors")).equals(fs.readFileSync(path.join(dir, "adapter_model.safetensors")))).toBe(true);
    removeLora(model);
  });

  it("accepts transformers >= 4.52 key naming (model.language_model.layers.N)", () => {
    const src = openSafetensors(path.join(LORA_DIR, "adapter_model.safetensors"));
    const dir = tmp();
    const tensors: Record<string, any> = {};
    for (const k of src.keys()) {
      const t = src.read(k);
      tensors[k.replace("base_model.model.model.layers.", "base_model.model.model.language_model.layers.")] = { dtype: "F32", shape: t.shape, data: t.data };
    }
    writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors);
    fs.copyFileSync(path.join(LORA_DIR, "adapter_config.json"), path.join(dir, "adapter_config.json"));
    const a = loadAdapter(model, dir);
    const b0 = a.modules.get("model.layers.1.self_attn.v_proj")!.lora!.B.dataSync();
    expect(Array.from(b0)).toEqual(Array.from(src.read("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight").data as Float32Array));
    removeLora(model);
  });

  it("an adapter whose modules or shapes do not fit gets a typed error listing each problem", () => {
    const src = openSafetensors(path.join(LORA_DIR, "adapter_model.safetensors"));
    const dir = tmp();
    const tensors: Record<string, any> = {};
    for (const k of src.keys()) {
      const t = src.read(k);
      tensors[k] = { dtype: "F32", shape: t.shape, data: t.data };
    }
    const q = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
    tensors[q] = { dtype: "F32", shape: [8, 32], data: new Float32Array(256) };
    tensors["base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"] = { dtype: "F32", shape: [8, 64], data: new Float32Array(512) };
    tensors["base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight"] = { dtype: "F32", shape: [64, 8], data: new Float32Array(512) };
    writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors);
    fs.copyFileSync(path.join(LORA_DIR, "adapter_config.json"), path.join(dir, "adapter_config.json"));
    const err = (() => {
      try {
        loadAdapter(model, dir);
      } catch (e) {
        return e as LoraError;
      }
    })();
    expect(err).toBeInstanceOf(LoraError);
    expect(err!.message).toMatch(/layers\.0\.self_attn\.q_proj\.lora_A\.weight: shape \[8,32\] does not fit, expected \[8,64\]/);
    expect(err!.message).toMatch(/model\.layers\.7\.self_attn\.q_proj: no such Linear/);
    expect((err!.details.problems as string[]).length).toBe(2);
    expect(() => loadAdapter(model, path.join(dir, "missing"))).toThrow(/adapter_config\.json: not found/);
  });
});
