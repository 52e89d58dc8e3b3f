import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { initBackend } from "@rarl/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SFT_DEFAULTS } from "./config";
import { readMetrics } from "./metrics";
import { SFTTrainer, sftTarget } from "./sft-trainer";
import { ToyPolicy } from "./testing/toy-policy";

let tmp: string;
beforeAll(async () => {
  await initBackend();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sft-test-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("SFTTrainer", () => {
  it("formats targets as <think>…</think><answer>…</answer>", () => {
    expect(sftTarget(" Yes ", "The lung is clear.")).toBe("<think>The lung is clear.</think><answer>Yes</answer>");
  });

  it("drives the completion-token NLL down on a toy target, and only completion tokens count", async () => {
    // Toy "tokenizer": the target text is a space-separated id list.
    const examples = [
      { id: "a", first: 0, target: "3 4 3 7" },
      { id: "b", first: 1, target: "5 3 7" },
    ];
    const policy = new ToyPolicy({ seed: 2 });
    const t = new SFTTrainer({
      config: { ...SFT_DEFAULTS, maxSteps: 30, learningRate: 0.05, batchSize: 2, progress: false, saveSteps: 100 },
      policy,
      examples,
      buildPrompt: (e) => ({ id: e.id, ids: [e.first] }),
      target: (e) => e.target,
      encodeTarget: (s) => s.split(" ").map(Number),
      runDir: path.join(tmp, "sft"),
    });
    const res = await t.train({ handleSigint: false });
    const m = readMetrics(res.runDir);
    expect(m).toHaveLength(30);
    expect(m[29].loss).toBeLessThan(m[0].loss * 0.7);
    expect(m[0].tokensPerSec).toBeGreaterThan(0);
    // Step 1's loss is the mean NLL of the 7 target tokens under the initial (B = 0) model: check it directly.
    const fresh = new ToyPolicy({ seed: 2 });
    const lp = fresh.completionLogprobs(
      [
        { prepared: { promptIds: [0] }, completionIds: [3, 4, 3, 7] },
        { prepared: { promptIds: [1] }, completionIds: [5, 3, 7] },
      ],
      4,
    );
    const v = lp.arraySync() as number[][];
    lp.dispose();
    const nll = -(v[0][0] + v[0][1] + v[0][2] + v[0][3] + v[1][0] + v[1][1] + v[1][2]) / 7;
    expect(m[0].loss).toBeCloseTo(nll, 5);
    policy.dispose();
    fresh.dispose();
  });
});
