/**
 * A real device error in the middle of a GRPO step on webgpu (Dawn; in CI mesa's software adapter): a kernel that
 * fails validation is dispatched during step 2's generation. The step's next read-back rejects with a
 * WebgpuDeviceError naming the kernel, train() rejects with it, checkpoint 1 stays complete (no temp folder), and
 * after clearing the fault a resumed run continues from checkpoint 1. (Its own file: webgpu.test.ts asserts that no
 * device error happened during its tests.)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { clearWebgpuDeviceFault, dispatchBrokenKernel, fixturesDir, WebgpuDeviceError, webgpuSkipReason } from "@rarl/core";
import { type LoadedQwen2VL, loadQwen2VL } from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listCheckpoints } from "./checkpoint";
import { GRPO_DEFAULTS } from "./config";
import { GRPOTrainer } from "./grpo-trainer";
import { readMetrics } from "./metrics";
import { QwenPolicy } from "./qwen-policy";

const why = await webgpuSkipReason();

describe.skipIf(why !== null)(`GRPO on webgpu: a device error mid-step${why ? ` (skipped: ${why})` : ""}`, () => {
  let loaded: LoadedQwen2VL;
  let before = "";
  let tmp = "";
  beforeAll(async () => {
    before = tf.getBackend();
    await tf.setBackend("webgpu");
    loaded = await loadQwen2VL(path.join(fixturesDir(), "qwen2vl-tiny"), { loadProcessor: false });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "webgpu-fault-grpo-"));
  });
  afterAll(async () => {
    loaded?.model.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
    if (before) await tf.setBackend(before);
  });

  it("train() rejects with the typed error naming the kernel; checkpoint 1 stays complete and a resumed run continues from it", { timeout: 300_000 }, async () => {
    const dir = path.join(tmp, "run");
    const ck = path.join(dir, "checkpoints");
    const config = { ...GRPO_DEFAULTS, maxSteps: 2, numGenerations: 2, maxCompletionLength: 2, saveSteps: 1, progress: false };
    const examples = [{ id: "q", ids: [151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198] }];
    const rewards = (items: Array<{ completionIds: number[] }>) => ({ len: items.map((it) => it.completionIds.length) });
    const trainer = (policy: QwenPolicy) => new GRPOTrainer({ config, policy, examples, buildPrompt: (e) => ({ inputIds: e.ids }), rewards, runDir: dir });

    const policy = new QwenPolicy(loaded.model, null, { seed: 0 });
    const gen = policy.generate.bind(policy);
    policy.generate = async (p, o) => {
      if (fs.existsSync(path.join(ck, "checkpoint-000001"))) dispatchBrokenKernel("rarl_test_step2_kernel");
      return gen(p, o);
    };
    const err = await trainer(policy)
      .train({ handleSigint: false })
      .then(
        () => null,
        (e) => e as WebgpuDeviceError,
      );
    policy.dispose();
    expect(err).toBeInstanceOf(WebgpuDeviceError);
    expect(err?.code).toBe("WEBGPU_VALIDATION");
    expect(err?.message).toMatch(/while compiling kernel "rarl_test_step2_kernel"/);
    expect(listCheckpoints(ck).map((c) => c.step)).toEqual([1]);
    expect(fs.readdirSync(ck)).toEqual(["checkpoint-000001"]);
    expect(readMetrics(dir).map((m) => m.step)).toEqual([1]);

    expect(await clearWebgpuDeviceFault()).toBe(err);
    const again = new QwenPolicy(loaded.model, null, { seed: 0 });
    try {
      await trainer(again).train({ resume: true, handleSigint: false });
    } finally {
      again.dispose();
    }
    expect(readMetrics(dir).map((m) => m.step)).toEqual([1, 2]);
    expect(listCheckpoints(ck).map((c) => c.step)).toEqual([1, 2]);
  });
});
