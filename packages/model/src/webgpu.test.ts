/**
 * The model on the webgpu backend (Dawn; in CI mesa's software adapter): the parity tool's every case (forward,
 * batch with padding, KV-cache greedy ids exact, teacher-forced log-probs, LoRA) against the Hugging Face
 * reference, and LoRA gradients against central finite differences and against cpu autodiff.
 * Skipped (with the reason) only where no webgpu adapter can start; .ci/run sets RARL_REQUIRE_WEBGPU=1 so CI fails
 * instead of skipping.
 */
import { Rng, webgpuDeviceErrorCount, webgpuSkipReason } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { completionLogprobs } from "./generation/completion";
import { type GenerateRequest, type GenerateResult, generate } from "./generation/generate";
import type { TokenizedPrompt } from "./generation/types";
import { runParity } from "./parity/run";
import { loadQwen2VL } from "./qwen2_vl/loading";
import type { Qwen2VLForConditionalGeneration } from "./qwen2_vl/model";
import { openReference, refArray, refImagePrompt, refRows, tinyFixtureDir } from "./qwen2_vl/parity_fixture";
import { expectCloseToScale } from "./testing/close";

const why = await webgpuSkipReason();
const suffix = why ? ` (skipped: ${why})` : "";

describe.skipIf(why !== null)(`Qwen2-VL on webgpu${suffix}`, () => {
  let before = "";
  beforeAll(async () => {
    before = tf.getBackend();
    await tf.setBackend("webgpu");
  });
  afterAll(async () => {
    if (before) await tf.setBackend(before);
  });

  it("`rarl parity` on the tiny fixture: every case PASS (greedy ids exact, log-probs within 1e-4)", { timeout: 600_000 }, async () => {
    const report = await runParity(tinyFixtureDir());
    const failed = Object.entries(report.cases).filter(([, c]) => c.status !== "PASS");
    expect(failed.map(([name, c]) => `${name}: ${c.status} ${c.reason ?? ""}`)).toEqual([]);
    expect(Object.keys(report.cases)).toEqual(expect.arrayContaining(["batch", "greedy", "completion", "lora_completion"]));
    expect(report.overall).toBe("PASS");
  });

  it("vocabulary chunks (forced: 8 MB chunks, the 39 MB embedding in 5): batch, greedy and LoRA log-prob cases PASS", { timeout: 600_000 }, async () => {
    const prev = process.env.RARL_VOCAB_CHUNK_BYTES;
    process.env.RARL_VOCAB_CHUNK_BYTES = "8000000";
    try {
      const { model } = await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false });
      expect(model.model.weights.embedChunks?.chunks.length).toBe(5);
      expect(model.model.weights.embedTokens.shape[0]).toBe(0);
      model.dispose();
      const report = await runParity(tinyFixtureDir(), { cases: ["batch", "greedy", "lora_completion"] });
      expect(Object.entries(report.cases).map(([k, c]) => `${k}: ${c.status} ${c.reason ?? ""}`)).toEqual(["batch: PASS ", "greedy: PASS ", "lora_completion: PASS "]);
    } finally {
      if (prev === undefined) delete process.env.RARL_VOCAB_CHUNK_BYTES;
      else process.env.RARL_VOCAB_CHUNK_BYTES = prev;
    }
  });

  it("the decoder runs @rarl/core's fused RMSNorm, SwiGLU and attention kernels on webgpu (once per norm, per MLP and per attention of each decoder layer)", { timeout: 600_000 }, async () => {
    const { model } = await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false });
    const ref = openReference();
    const prof = await tf.profile(() =>
      tf.tidy(() => completionLogprobs(model, { prompts: [refImagePrompt(ref)], completions: [refRows(ref, "completion.completion_ids")[0]] }).logprobs),
    );
    tf.dispose(prof.result as tf.Tensor);
    const count = (name: string) => prof.kernels.filter((k) => k.name === name).length;
    const layers = model.model.weights.layers.length;
    model.dispose();
    // Each decoder pass (completionLogprobs may run more than one: prompt, then completion rows) has one MLP per
    // layer and 2 norms per layer + the final norm.
    const passes = count("RarlSwiglu") / layers;
    expect(Number.isInteger(passes) && passes >= 1).toBe(true);
    expect(count("RarlRmsNorm")).toBe(passes * (2 * layers + 1));
    expect(count("RarlAttention")).toBe(passes * layers);
  });

  it("greedy generate, 3 left-padded prompts x 2 samples (prefill and shared-prefix decode through the fused attention, once per layer per forward): ids equal cpu's and the reference's, numTensors flat", { timeout: 600_000 }, async () => {
    const ref = openReference();
    const bIds = refRows(ref, "batch.input_ids");
    const bMask = refRows(ref, "batch.attention_mask");
    const px = refArray(ref, "batch.pixel_values").data as Float32Array;
    const grid = refRows(ref, "batch.image_grid_thw");
    const n0 = grid[0][0] * grid[0][1] * grid[0][2];
    const second: TokenizedPrompt = { inputIds: bIds[1].filter((_, i) => bMask[1][i] === 1), pixelValues: px.slice(n0 * 1176), imageGridThw: [grid[1]] };
    const prompts = [refImagePrompt(ref), second, { inputIds: refRows(ref, "text_only.input_ids")[0] }]; // 43, 35 and 29 tokens
    const req: GenerateRequest = { prompts, doSample: false, maxNewTokens: 5, numSamples: 2, eosTokenIds: [151645, 151643] };
    const ids = (r: GenerateResult) => r.samples.map((ss) => ss.map((x) => x.ids));
    await tf.setBackend("cpu");
    const onCpu = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
    const want = ids(await generate(onCpu, null, req));
    onCpu.dispose();
    await tf.setBackend("webgpu");
    const { model } = await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false });
    const layers = model.model.weights.layers.length;
    let got: GenerateResult | undefined;
    const prof = await tf.profile(async () => {
      got = await generate(model, null, req);
      return [];
    });
    // the stacked shared-prefix cache and the per-step row indices are all freed (numTensors flat over calls)
    const before = tf.memory().numTensors;
    await generate(model, null, { ...req, maxNewTokens: 3 });
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
    expect(ids(got!)).toEqual(want);
    expect(want[0][0]).toEqual(refRows(ref, "greedy.generated_ids")[0].slice(0, 5));
    const forwards = got!.stats.prefillCalls + got!.stats.decodeSteps;
    expect(got!.stats.decodeSteps).toBeGreaterThan(0);
    expect(prof.kernels.filter((k) => k.name === "RarlAttention").length).toBe(forwards * layers);
  });

  describe("LoRA gradients of completion log-probs", () => {
    // One copy of the model and LoRA per backend (tensors are not moved between backends: webgpu reads are async).
    type Setup = { model: Qwen2VLForConditionalGeneration; vars: tf.Variable[] };
    const setups: Setup[] = [];
    let prompt: TokenizedPrompt;
    let completion: number[];

    async function setup(backend: string, vocabChunkBytes?: number): Promise<Setup> {
      await tf.setBackend(backend);
      const model = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false, vocabChunkBytes })).model;
      const rng = new Rng(7);
      const vars: tf.Variable[] = [];
      for (const [name, lin] of model.namedLinears()) {
        if (!/^model\.layers\.0\.self_attn\.[qv]_proj$/.test(name)) continue;
        const rand = (shape: [number, number]) => tf.tensor2d(Float32Array.from({ length: shape[0] * shape[1] }, () => rng.normal(0, 0.1)), shape);
        const A = tf.variable(rand([4, lin.inFeatures]), true, `${backend}${vocabChunkBytes ?? ""}.${name}.lora_A`);
        const B = tf.variable(rand([lin.outFeatures, 4]), true, `${backend}${vocabChunkBytes ?? ""}.${name}.lora_B`);
        lin.lora = { A, B, scale: 2, dropout: 0 };
        vars.push(A, B);
      }
      setups.push({ model, vars });
      return { model, vars };
    }

    beforeAll(() => {
      const ref = openReference();
      prompt = refImagePrompt(ref);
      completion = refRows(ref, "completion.completion_ids")[0];
    });
    afterAll(async () => {
      for (const s of setups) {
        tf.dispose(s.vars);
        s.model.dispose();
      }
      await tf.setBackend("webgpu");
    });

    const objective = (model: Qwen2VLForConditionalGeneration) => () =>
      tf.tidy(() => tf.sum(completionLogprobs(model, { prompts: [prompt], completions: [completion] }).logprobs) as tf.Scalar);
    async function grads({ model, vars }: Setup): Promise<Float32Array[]> {
      const { value, grads } = tf.variableGrads(objective(model), vars);
      const out = await Promise.all(vars.map(async (v) => (await grads[v.name].data()) as Float32Array));
      tf.dispose([value, ...Object.values(grads)]);
      return out;
    }
    async function objectiveAt(s: Setup, v: tf.Variable, at: number, x: number): Promise<number> {
      const data = ((await v.data()) as Float32Array).slice();
      data[at] = x;
      v.assign(tf.tensor(data, v.shape));
      const f = objective(s.model)();
      const r = (await f.data())[0];
      f.dispose();
      return r;
    }

    it("webgpu autodiff matches cpu autodiff (1e-3 relative), gradient checkpointing (1e-5), the vocabulary-chunked lm_head (1e-4) and central finite differences on webgpu (1e-2)", { timeout: 600_000 }, async () => {
      const onCpu = await setup("cpu");
      const cpu = await grads(onCpu);
      const onGpu = await setup("webgpu");
      const gpu = await grads(onGpu);
      expect(onGpu.vars).toHaveLength(4);
      expectCloseToScale(gpu, cpu, 1e-3);
      // Gradient checkpointing (each layer, fused attention included, recomputed in the backward pass) gives the same gradients.
      onGpu.model.gradientCheckpointing = true;
      const ck = await grads(onGpu).finally(() => {
        onGpu.model.gradientCheckpointing = false;
      });
      expectCloseToScale(ck, gpu, 1e-5);
      // The vocabulary-chunked lm_head (5 chunks) gives the same gradients.
      const onChunks = await setup("webgpu", 8_000_000);
      expect(onChunks.model.model.weights.embedChunks?.chunks.length).toBe(5);
      const chunked = await grads(onChunks);
      expectCloseToScale(chunked, gpu, 1e-4);
      const eps = 5e-2;
      for (let i = 0; i < gpu.length; i++) {
        const g = gpu[i];
        const v = onGpu.vars[i];
        let at = 0;
        for (let j = 1; j < g.length; j++) if (Math.abs(g[j]) > Math.abs(g[at])) at = j;
        const x0 = ((await v.data()) as Float32Array)[at];
        const fp = await objectiveAt(onGpu, v, at, x0 + eps);
        const fm = await objectiveAt(onGpu, v, at, x0 - eps);
        await objectiveAt(onGpu, v, at, x0);
        const fd = (fp - fm) / (2 * eps);
        expect(Math.abs(fd - g[at]) / Math.max(Math.abs(fd), Math.abs(g[at]))).toBeLessThan(1e-2);
      }
    });
  });

  it("no WebGPU device error (validation, out-of-memory) was reported during these tests", () => {
    expect(webgpuDeviceErrorCount()).toBe(0);
  });
});
