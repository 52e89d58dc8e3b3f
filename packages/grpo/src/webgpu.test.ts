/**
 * GRPO on the webgpu backend (Dawn; in CI mesa's software adapter): rollouts, loss, backward, AdamW, a checkpoint
 * and resume on the tiny Qwen2-VL. Skipped (with the reason) only where no webgpu adapter starts; .ci/run sets
 * RARL_REQUIRE_WEBGPU=1 so that CI fails instead.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixturesDir, Rng, webgpuDeviceErrorCount, webgpuSkipReason } from "@rarl/core";
import { type LoadedQwen2VL, lmHeadWeight, loadQwen2VL } from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GRPO_DEFAULTS, SFT_DEFAULTS } from "./config";
import { GRPOTrainer } from "./grpo-trainer";
import { readMetrics } from "./metrics";
import { QwenPolicy } from "./qwen-policy";
import { SFTTrainer } from "./sft-trainer";

const why = await webgpuSkipReason();
const FIXTURE = path.join(fixturesDir(), "qwen2vl-tiny");

describe.skipIf(why !== null)(`GRPO on webgpu${why ? ` (skipped: ${why})` : ""}`, () => {
  let loaded: LoadedQwen2VL;
  let before = "";
  let proj: Float32Array;
  beforeAll(async () => {
    before = tf.getBackend();
    await tf.setBackend("webgpu");
    loaded = await loadQwen2VL(FIXTURE);
    const rng = new Rng(5);
    const u = tf.tensor1d(Float32Array.from({ length: 64 }, () => rng.normal()));
    const p = tf.tidy(() => tf.squeeze(tf.matMul(lmHeadWeight(loaded.model), tf.reshape(tf.div(u, tf.norm(u)), [64, 1]))));
    proj = (await p.data()) as Float32Array;
    tf.dispose([u, p]);
  });
  afterAll(async () => {
    loaded?.model.dispose();
    if (before) await tf.setBackend(before);
  });

  // Text prompt "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n" (ids).
  const examples = [{ id: "q", ids: [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198] }];
  const rewards = (items: Array<{ completionIds: number[] }>) => ({ proj: items.map((it) => it.completionIds.reduce((a, id) => a + proj[id], 0) / it.completionIds.length) });

  it("2 steps + checkpoint + resume to 3 gives the weights of 3 uninterrupted steps, bit for bit, as does a rerun; metrics finite", { timeout: 600_000 }, async () => {
    const config = { ...GRPO_DEFAULTS, maxSteps: 3, numGenerations: 4, maxCompletionLength: 3, temperature: 0.2, learningRate: 0.05, lrScheduler: "constant" as const, beta: 0.04, saveSteps: 1000, progress: false };
    const run = async (dir: string, stopAt: number | null, resume: boolean) => {
      const policy = new QwenPolicy(loaded.model, loaded.processor, { seed: resume ? 123 : 0 });
      const t = new GRPOTrainer({ config, policy, examples, buildPrompt: (e) => ({ inputIds: e.ids }), rewards, runDir: dir });
      await t.train({ resume, handleSigint: false, onStep: (rec) => rec.step === stopAt && t.requestStop() });
      const w = await Promise.all(policy.trainableVariables().map(async (v) => Array.from(await v.data())));
      policy.dispose();
      return w;
    };
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "webgpu-resume-"));
    try {
      const want = await run(path.join(tmp, "full"), null, false);
      await run(path.join(tmp, "part"), 2, false);
      expect(fs.readdirSync(path.join(tmp, "part", "checkpoints"))).toContain("checkpoint-000002");
      const got = await run(path.join(tmp, "part"), null, true);
      // Two uninterrupted runs agree too (no float atomics in the kernels: see @rarl/core's webgpu-kernels/matmul.ts).
      expect(await run(path.join(tmp, "full2"), null, false)).toEqual(want);
      expect(got).toEqual(want);
      expect(want.some((w) => w.some((x) => x !== 0))).toBe(true);
      const m = readMetrics(path.join(tmp, "full"));
      expect(m).toHaveLength(3);
      for (const r of m) for (const k of ["loss", "gradNorm", "reward"]) expect(Number.isFinite(r[k] as number), `step ${r.step}: ${k} = ${r[k]}`).toBe(true);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("SFT steps: step 1's loss is the completion tokens' mean NLL under the initial (B = 0) adapter; the loss falls", { timeout: 600_000 }, async () => {
    const target = [3838, 374, 220, 19, 13, 151645];
    const policy = new QwenPolicy(loaded.model, loaded.processor, { seed: 4 });
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "webgpu-sft-"));
    try {
      const prepared = await policy.prepare({ inputIds: examples[0].ids });
      const lp = policy.completionLogprobs([{ prepared, completionIds: target }], target.length);
      const nll = -Array.from(await lp.data()).reduce((a, b) => a + b, 0) / target.length;
      lp.dispose();
      policy.release(prepared);
      const t = new SFTTrainer({
        config: { ...SFT_DEFAULTS, maxSteps: 3, learningRate: 0.05, batchSize: 1, progress: false, saveSteps: 100 },
        policy,
        examples,
        buildPrompt: (e) => ({ inputIds: e.ids }),
        target: () => "x",
        encodeTarget: () => target,
        runDir: tmp,
      });
      await t.train({ handleSigint: false });
      const m = readMetrics(tmp).map((r) => r.loss as number);
      expect(m).toHaveLength(3);
      expect(m[0]).toBeCloseTo(nll, 4);
      expect(m[2]).toBeLessThan(m[0]);
    } finally {
      policy.dispose();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("no WebGPU device error (validation, out-of-memory) was reported during these tests", () => {
    expect(webgpuDeviceErrorCount()).toBe(0);
  });
});
