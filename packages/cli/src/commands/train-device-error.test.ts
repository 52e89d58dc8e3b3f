/**
 * `rarl train` when the GPU fails mid-run (issue 14, bad input): a device error surfacing in the middle of a step
 * (as a WebgpuDeviceError from a read-back) ends the command with a non-zero code and the message, leaves only
 * complete checkpoints in the run folder, and `--resume` continues from the newest one.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { WebgpuDeviceError } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { listCheckpoints, POLICY_FACTORIES } from "@rarl/grpo";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJsonl } from "../report/io";
import { captureCli } from "../testing/capture";

let tmp: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-train-gpu-error-"));
  await synthesize(path.join(tmp, "synth"), { n: 8, size: 32, seed: 3 });
});
const toyFactory = POLICY_FACTORIES.toy;
afterAll(() => {
  POLICY_FACTORIES.toy = toyFactory;
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("rarl train: a GPU error in the middle of a step", () => {
  it("exits 1 with the typed error's message; checkpoints 2 and 4 stay complete and --resume continues from 4", async () => {
    const out = path.join(tmp, "run");
    const ckDir = path.join(out, "checkpoints");
    const oom = new WebgpuDeviceError('webgpu: the WebGPU device reported a GPUOutOfMemoryError: Out of memory allocating a buffer (the last kernel dispatched before it was "matMul")', {
      code: "WEBGPU_OUT_OF_MEMORY",
    });
    // The toy policy, except that once checkpoint 4 exists the next log-prob pass (step 5, after its generation)
    // throws what the webgpu backend's read-back throws after an out-of-memory. (The CLI's schema knows only the
    // "toy" and "qwen2vl" model types, so the toy factory is swapped for this run.)
    POLICY_FACTORIES.toy = async (m, ctx) => {
      const built = await toyFactory(m, ctx);
      const p = built.policy as unknown as Record<string, (...a: unknown[]) => unknown>;
      for (const name of ["completionLogprobs", "completionLogprobsWithEntropy"]) {
        const f = p[name].bind(p);
        p[name] = (...a: unknown[]) => {
          if (fs.existsSync(path.join(ckDir, "checkpoint-000004"))) throw oom;
          return f(...a);
        };
      }
      return built;
    };
    const cfg = {
      trainer: "grpo",
      numGenerations: 4,
      maxCompletionLength: 4,
      saveSteps: 2,
      saveTotalLimit: 3,
      progress: false,
      model: { type: "toy", vocab: 16 },
      data: { format: "rarl", path: "synth/samples.jsonl", split: "train", limit: 6 },
      rewards: { rewards: [{ use: "format" }, { use: "accuracy", weight: 2 }], scorer: "lexical-f1" },
    };
    fs.writeFileSync(path.join(tmp, "toy.json"), JSON.stringify(cfg));

    const r = await captureCli(["train", "--config", path.join(tmp, "toy.json"), "--out", out, "--max-steps", "8"]);
    POLICY_FACTORIES.toy = toyFactory;
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/rarl: webgpu: the WebGPU device reported a GPUOutOfMemoryError: Out of memory allocating a buffer/);
    expect(listCheckpoints(ckDir).map((c) => c.step)).toEqual([2, 4]);
    expect(fs.readdirSync(ckDir).sort()).toEqual(["checkpoint-000002", "checkpoint-000004"]); // no temp folder left
    expect(readJsonl<{ step: number }>(path.join(out, "metrics.jsonl")).map((x) => x.step)).toEqual([1, 2, 3, 4]);

    const resumed = await captureCli(["train", "--config", path.join(tmp, "toy.json"), "--out", out, "--max-steps", "6", "--resume"]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(readJsonl<{ step: number }>(path.join(out, "metrics.jsonl")).map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
