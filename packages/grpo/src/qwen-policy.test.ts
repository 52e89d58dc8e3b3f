import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixturesDir, initBackend, Rng } from "@rarl/core";
import { type LoadedQwen2VL, lmHeadWeight, loadQwen2VL } from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GRPO_DEFAULTS, type GRPOConfig } from "./config";
import { GRPOTrainer } from "./grpo-trainer";
import { grpoLoss, grpoMetrics } from "./math/loss";
import { readMetrics } from "./metrics";
import { QwenPolicy } from "./qwen-policy";

const FIXTURE = path.join(fixturesDir(), "qwen2vl-tiny");
const IMAGE = `${FIXTURE}/images/checker_56x140.png`;

let loaded: LoadedQwen2VL;
beforeAll(async () => {
  await initBackend();
  loaded = await loadQwen2VL(FIXTURE);
});
afterAll(() => loaded?.model.dispose());

const messages = [{ role: "user", content: [{ type: "image" }, { type: "text", text: "Is there a lesion?" }] }];

describe("QwenPolicy on the tiny Qwen2-VL fixture", () => {
  it("generates G samples and scores them; adapter off (and B = 0) is the reference: KL = 0, ratio = 1", async () => {
    const policy = new QwenPolicy(loaded.model, loaded.processor, { r: 4, alpha: 8 });
    expect(policy.trainableVariables()).toHaveLength(2 * 4 * 2); // 2 layers x q,k,v,o x (A, B)
    const h = await policy.prepare({ messages, images: [IMAGE] });
    expect(h.imageEmbeds?.shape[1]).toBe(64);
    expect(h.chatMessages).toEqual([{ role: "user", content: "Is there a lesion?" }]);
    expect(h.image?.length).toBe(fs.statSync(IMAGE).size);
    const comps = await policy.generate(h, { numSamples: 3, maxNewTokens: 5, temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, rng: new Rng(1) });
    expect(comps).toHaveLength(3);
    const items = comps.map((c) => ({ prepared: h, completionIds: c.ids }));
    const T = Math.max(...comps.map((c) => c.ids.length));
    const lp = policy.completionLogprobs(items, T);
    const ref = policy.withAdapterDisabled(() => policy.completionLogprobs(items, T));
    // The log-probs recomputed with the cached image features equal the sampler's raw log-probs.
    const rows = lp.arraySync() as number[][];
    for (const [b, c] of comps.entries()) {
      for (const [t, x] of c.logprobs!.entries()) expect(rows[b][t]).toBeCloseTo(x, 3);
    }
    const mask = tf.tensor2d(items.flatMap((it) => Array.from({ length: T }, (_, t) => (t < it.completionIds.length ? 1 : 0))), [3, T]);
    const m = grpoMetrics({ logp: lp, oldLogp: lp, refLogp: ref, mask, advantages: [1, 0, -1] }, { epsilonLow: 0.2 });
    expect(m.klMean).toBe(0);
    expect(m.ratioMean).toBe(1);
    tf.dispose([lp, ref, mask]);
    policy.release(h);
    policy.dispose();
  });

  it("suppresses the image/video pad and vision start/end ids when sampling (their config.json ids)", () => {
    const policy = new QwenPolicy(loaded.model, loaded.processor, { r: 4, alpha: 8 });
    const c = loaded.model.config;
    expect(policy.visionTokenIds.sort()).toEqual([c.imageTokenId, c.videoTokenId, c.visionStartTokenId, c.visionEndTokenId].sort());
    expect(policy.visionTokenIds).toContain(loaded.processor!.tokenizer.specialIds.imagePad);
    policy.dispose();
  });
  it("batched log-probs over prompts with different images and lengths equal the per-prompt ones", async () => {
    const policy = new QwenPolicy(loaded.model, loaded.processor, { r: 4, alpha: 8, seed: 2 });
    const names = policy.trainableNames();
    const rng = new Rng(9);
    for (const [i, v] of policy.trainableVariables().entries()) if (names[i].endsWith("lora_B")) v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => rng.normal(0, 0.05)), v.shape));
    const h1 = await policy.prepare({ messages, images: [IMAGE] });
    const h2 = await policy.prepare({ messages: [{ role: "user", content: [{ type: "image" }, { type: "text", text: "Which side is the disc on, left or right?" }] }], images: [`${FIXTURE}/images/disc_100x80.png`] });
    const items = [
      { prepared: h1, completionIds: [785, 3681, 374] },
      { prepared: h2, completionIds: [2753, 13] },
      { prepared: h1, completionIds: [9454] },
    ];
    const batched = policy.completionLogprobs(items, 3, 0.7);
    const rows = batched.arraySync() as number[][];
    for (const [b, it] of items.entries()) {
      const single = policy.completionLogprobs([it], it.completionIds.length, 0.7);
      const want = (single.arraySync() as number[][])[0];
      single.dispose();
      for (const [t, x] of want.entries()) expect(rows[b][t]).toBeCloseTo(x, 4);
    }
    batched.dispose();
    policy.release(h1);
    policy.release(h2);
    policy.dispose();
  });

  it("d(GRPO loss)/d(LoRA weights) matches central finite differences (rel. err < 1e-2), with and without gradient checkpointing", async () => {
    const policy = new QwenPolicy(loaded.model, loaded.processor, { r: 4, alpha: 8, seed: 3 });
    const vars = policy.trainableVariables();
    // Move B off zero so that both A and B get gradients.
    const rng = new Rng(7);
    const names = policy.trainableNames();
    for (const [i, v] of vars.entries()) if (names[i].endsWith("lora_B")) v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => rng.normal(0, 0.05)), v.shape));
    const h = await policy.prepare({ messages, images: [IMAGE] });
    const completions = [
      [785, 3681, 374, 264],
      [2753, 13, 151645],
    ];
    const items = completions.map((c) => ({ prepared: h, completionIds: c }));
    const T = 4;
    const mask = tf.tensor2d([1, 1, 1, 1, 1, 1, 1, 0], [2, T]);
    const ref = policy.withAdapterDisabled(() => policy.completionLogprobs(items, T));
    const cur = policy.completionLogprobs(items, T);
    const old = tf.tidy(() => tf.add(cur, tf.tensor2d([0.05, -0.1, 0.02, 0, -0.03, 0.08, 0, 0], [2, T]))) as tf.Tensor2D;
    cur.dispose();
    const lossFn = () =>
      grpoLoss({ logp: policy.completionLogprobs(items, T), oldLogp: old, refLogp: ref, mask, advantages: [0.8, -0.6] }, { beta: 0.04, epsilonLow: 0.2, lossType: "grpo" });
    const gradsWith = (on: boolean) => {
      policy.setGradientCheckpointing(on);
      const { grads, value } = tf.variableGrads(lossFn, vars);
      value.dispose();
      policy.setGradientCheckpointing(false);
      return grads;
    };
    const grads = gradsWith(false);
    const gradsCk = gradsWith(true);
    const lossAt = () => {
      const l = tf.tidy(lossFn);
      const x = l.dataSync()[0];
      l.dispose();
      return x;
    };
    const checks: string[] = [];
    for (const v of [vars[0], vars[1], vars[vars.length - 2], vars[vars.length - 1]]) {
      const g = grads[v.name].dataSync();
      let k = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[k])) k = i;
      const orig = v.dataSync().slice();
      const eps = 1e-2;
      const at = (d: number) => {
        const w = orig.slice();
        w[k] += d;
        v.assign(tf.tensor(w, v.shape));
        return lossAt();
      };
      const fd = (at(eps) - at(-eps)) / (2 * eps);
      v.assign(tf.tensor(orig, v.shape));
      const rel = Math.abs(fd - g[k]) / Math.max(Math.abs(g[k]), 1e-8);
      checks.push(`${v.name}[${k}] analytic ${g[k].toExponential(4)} fd ${fd.toExponential(4)} rel ${rel.toExponential(2)}`);
      expect(Math.abs(g[k])).toBeGreaterThan(1e-4);
      expect(rel, checks.at(-1)).toBeLessThan(1e-2);
      // checkpointed: the same gradient (every entry, to float32 rounding), hence the same finite-difference agreement
      const gc = gradsCk[v.name].dataSync();
      const relCk = Math.abs(fd - gc[k]) / Math.max(Math.abs(gc[k]), 1e-8);
      expect(relCk).toBeLessThan(1e-2);
      let maxG = 0;
      let maxD = 0;
      for (let i = 0; i < g.length; i++) {
        maxG = Math.max(maxG, Math.abs(g[i]));
        maxD = Math.max(maxD, Math.abs(g[i] - gc[i]));
      }
      expect(maxD).toBeLessThanOrEqual(1e-5 * maxG);
    }
    console.log(checks.join("\n"));
    tf.dispose(Object.values(grads));
    tf.dispose(Object.values(gradsCk));
    tf.dispose([old, ref, mask]);
    policy.release(h);
    policy.dispose();
  });

  it("saves the adapter in PEFT format (keys, shapes, config)", async () => {
    const policy = new QwenPolicy(loaded.model, loaded.processor);
    const dir = fs.mkdtempSync("/tmp/qwen-adapter-");
    policy.saveAdapter(dir);
    const { openSafetensors } = await import("@rarl/core");
    const st = openSafetensors(`${dir}/adapter_model.safetensors`);
    expect(st.keys()).toContain("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    expect(st.info("base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight").shape).toEqual([64, 8]);
    // Same key set as the fixture's PEFT-saved adapter.
    const ref = openSafetensors(`${FIXTURE}/lora/adapter_model.safetensors`);
    expect(new Set(st.keys())).toEqual(new Set(ref.keys()));
    const cfg = JSON.parse(fs.readFileSync(`${dir}/adapter_config.json`, "utf8"));
    expect(cfg).toMatchObject({ peft_type: "LORA", r: 8, lora_alpha: 16, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"] });
    fs.rmSync(dir, { recursive: true });
    policy.dispose();
  });

  describe("GRPO training of the tiny model", () => {
    // Text prompt "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n" (ids).
    const examples = [{ id: "q", ids: [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198] }];
    /**
     * An easy-to-learn reward: the mean, over completion tokens, of the token embedding's projection on a fixed random
     * direction u (standardised). Moving the final hidden state towards u raises it, which LoRA on q/k/v/o can do.
     */
    function projectionReward() {
      const rng = new Rng(5);
      const u = tf.tensor1d(Float32Array.from({ length: 64 }, () => rng.normal()));
      const proj = tf.tidy(() => tf.squeeze(tf.matMul(lmHeadWeight(loaded.model), tf.reshape(tf.div(u, tf.norm(u)), [64, 1])))).dataSync() as Float32Array;
      u.dispose();
      let ss = 0;
      for (const x of proj) ss += x * x;
      const sd = Math.sqrt(ss / proj.length);
      return (items: Array<{ completionIds: number[] }>) => ({ proj: items.map((it) => it.completionIds.reduce((a, id) => a + proj[id] / sd, 0) / it.completionIds.length) });
    }
    const cfg = (over: Partial<GRPOConfig>): GRPOConfig => ({
      ...GRPO_DEFAULTS,
      numGenerations: 8,
      maxCompletionLength: 4,
      temperature: 0.2,
      learningRate: 0.05,
      lrScheduler: "constant",
      beta: 0,
      saveSteps: 1000,
      progress: false,
      ...over,
    });

    it("learning test: mean reward rises by > 0.5 (in reward std units) in 15 steps (seed 0)", async () => {
      const policy = new QwenPolicy(loaded.model, loaded.processor);
      const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "qwen-learn-"));
      expect(new GRPOTrainer({ config: cfg({ gradientCheckpointing: false }), policy, examples, buildPrompt: (e) => ({ inputIds: e.ids }), rewards: projectionReward(), runDir }) && loaded.model.gradientCheckpointing).toBe(false);
      // the default config turns activation checkpointing on: this learning run trains through the checkpointed layers
      const t = new GRPOTrainer({ config: cfg({ maxSteps: 15 }), policy, examples, buildPrompt: (e) => ({ inputIds: e.ids }), rewards: projectionReward(), runDir });
      expect(loaded.model.gradientCheckpointing).toBe(true);
      const counts: number[] = [];
      await t.train({ handleSigint: false, onStep: (rec) => counts.push(rec.numTensors as number) });
      // No tensor leak on the real model either (steps 2..15 after the first-call caches).
      expect(new Set(counts.slice(1)).size).toBe(1);
      const r = readMetrics(runDir).map((m) => m.reward as number);
      const first = (r[0] + r[1] + r[2]) / 3;
      const last = (r[12] + r[13] + r[14]) / 3;
      console.log(`tiny-model learning: reward ${r.map((x) => x.toFixed(2)).join(" ")}`);
      expect(last - first).toBeGreaterThan(0.5);
      fs.rmSync(runDir, { recursive: true });
      policy.dispose();
    });

    it("resume on the real model: 2 steps + resume to 3 gives the weights of 3 uninterrupted steps, bit for bit", async () => {
      const c = cfg({ maxSteps: 3, numGenerations: 4, maxCompletionLength: 3, beta: 0.04, numIterations: 2, weightDecay: 0.01 });
      const run = async (dir: string, stopAt: number | null, resume: boolean) => {
        const policy = new QwenPolicy(loaded.model, loaded.processor, { seed: resume ? 123 : 0 });
        const t = new GRPOTrainer({ config: c, policy, examples, buildPrompt: (e) => ({ inputIds: e.ids }), rewards: projectionReward(), runDir: dir });
        await t.train({ resume, handleSigint: false, onStep: (rec) => rec.step === stopAt && t.requestStop() });
        const w = policy.trainableVariables().map((v) => Array.from(v.dataSync()));
        policy.dispose();
        return w;
      };
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "qwen-resume-"));
      const want = await run(path.join(tmp, "full"), null, false);
      await run(path.join(tmp, "part"), 2, false);
      const got = await run(path.join(tmp, "part"), null, true);
      expect(got).toEqual(want);
      expect(want.some((w) => w.some((x) => x !== 0))).toBe(true);
      fs.rmSync(tmp, { recursive: true });
    });
  });
});
