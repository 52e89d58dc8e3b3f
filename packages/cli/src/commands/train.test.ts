import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { synthesize } from "@rarl/datasets";
import { MockVllmServer } from "@rarl/grpo";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../program";
import { readJsonl } from "../report/io";
import { captureCli } from "../testing/capture";

let tmp: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-train-cli-"));
  await synthesize(path.join(tmp, "synth"), { n: 8, size: 32, seed: 3 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const lines = (f: string) => readJsonl<any>(f);

describe("rarl train", () => {
  it("runs GRPO on the synthetic set with the toy model, then --resume continues to --max-steps", async () => {
    const cfg = {
      trainer: "grpo",
      numGenerations: 4,
      maxCompletionLength: 4,
      saveSteps: 2,
      progress: false,
      model: { type: "toy", vocab: 16 },
      data: { format: "rarl", path: "synth/samples.jsonl", split: "train", limit: 6 },
      rewards: { rewards: [{ use: "format" }, { use: "accuracy", weight: 2 }], scorer: "lexical-f1" },
    };
    fs.writeFileSync(path.join(tmp, "grpo.json"), JSON.stringify(cfg));
    const out = path.join(tmp, "run-grpo");
    expect(await runCli(["train", "--config", path.join(tmp, "grpo.json"), "--out", out, "--max-steps", "3"])).toBe(0);
    expect(lines(path.join(out, "metrics.jsonl")).map((r) => r.step)).toEqual([1, 2, 3]);
    const m = lines(path.join(out, "metrics.jsonl"))[0];
    expect(m).toHaveProperty("rewards/format/mean");
    expect(m).toHaveProperty("rewards/accuracy/mean");
    expect(fs.readdirSync(path.join(out, "checkpoints")).sort()).toEqual(["checkpoint-000002", "checkpoint-000003"]);
    expect(fs.existsSync(path.join(out, "adapter", "adapter_model.safetensors"))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, "adapter", "adapter_config.json"), "utf8")).peft_type).toBe("LORA");
    expect(await runCli(["train", "--config", path.join(tmp, "grpo.json"), "--out", out, "--max-steps", "5", "--resume"])).toBe(0);
    expect(lines(path.join(out, "metrics.jsonl")).map((r) => r.step)).toEqual([1, 2, 3, 4, 5]);
  });

  it("runs SFT, and reports bad configs with the field name", async () => {
    const cfg = { trainer: "sft", batchSize: 2, maxCompletionLength: 16, progress: false, model: { type: "toy" }, data: { format: "rarl", path: "synth/samples.jsonl", limit: 4 } };
    fs.writeFileSync(path.join(tmp, "sft.json"), JSON.stringify(cfg));
    const out = path.join(tmp, "run-sft");
    expect(await runCli(["train", "--config", path.join(tmp, "sft.json"), "--out", out, "--max-steps", "2"])).toBe(0);
    expect(lines(path.join(out, "metrics.jsonl"))).toHaveLength(2);
    fs.writeFileSync(path.join(tmp, "bad.json"), JSON.stringify({ ...cfg, epsilon: 0.2 }));
    const errs: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => {
      errs.push(String(s));
      return true;
    }) as typeof process.stderr.write;
    try {
      expect(await runCli(["train", "--config", path.join(tmp, "bad.json"), "--out", out])).toBe(1);
    } finally {
      process.stderr.write = write;
    }
    expect(errs.join("")).toMatch(/unknown field "epsilon"/);
  });

  it("--dry-run checks the TRL loss-family fields and names invalid combinations with a suggestion", async () => {
    const base = {
      trainer: "grpo",
      progress: false,
      model: { type: "toy", vocab: 16 },
      data: { format: "rarl", path: "synth/samples.jsonl" },
      rewards: { rewards: [{ use: "format" }, { use: "accuracy" }], scorer: "lexical-f1" },
    };
    const run = async (over: Record<string, unknown>) => {
      const f = path.join(tmp, `dry-${Math.random().toString(36).slice(2)}.json`);
      fs.writeFileSync(f, JSON.stringify({ ...base, ...over }));
      return captureCli(["train", "--config", f, "--dry-run", "--gflops", "1"]);
    };
    let r = await run({ lossType: "cispo", epsilonHigh: 5, importanceSamplingLevel: "sequence", topEntropyQuantile: 0.2, rewardWeights: [1, 2], generation: { backend: "vllm", baseUrl: "http://127.0.0.1:8000", model: "Qwen/Qwen2-VL-2B-Instruct" } });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/loss {4}cispo \(sequence level\), epsilon 0.2, epsilonHigh 5, beta 0.04, top 0.2 entropy tokens; rewards sum_then_normalize, scale group; generation vllm http:\/\/127.0.0.1:8000 \(Qwen\/Qwen2-VL-2B-Instruct\), importance sampling sequence_mask \[-inf, 3\]/);
    r = await run({ lossType: "cispo" });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/field "epsilonHigh": lossType "cispo" needs epsilonHigh.*set "epsilonHigh": 5.0/);
    r = await run({ topEntropyQuantile: 0 });
    expect(r.err).toMatch(/topEntropyQuantile must be > 0 \(default 1\)/);
    r = await run({ delta: 1.1 });
    expect(r.err).toMatch(/field "delta": delta 1.1 must be > 1 \+ epsilon = 1.2; set "delta" above 1.2/);
    r = await run({ lossType: "dapoo" });
    expect(r.err).toMatch(/lossType.*(did you mean|must be equal to one of)/);
    r = await run({ importanceSamplingLevel: "sentence" });
    expect(r.err).toMatch(/importanceSamplingLevel/);
    r = await run({ rewardWeights: { acuracy: 2 } });
    expect(r.err).toMatch(/"rewardWeights.acuracy" names no reward \(rewards: format, accuracy\); did you mean "accuracy"\?/);
    r = await run({ rewardWeights: [1] });
    expect(r.err).toMatch(/"rewardWeights" has 1 weight\(s\) for 2 reward\(s\)/);
    r = await run({ generation: { backend: "vllm", model: "m" } });
    expect(r.err).toMatch(/generation.*baseUrl/);
  });

  it("runs GRPO with generation.backend vllm against a local vLLM-protocol server (not a real vLLM), surviving a server restart", async () => {
    const server = new MockVllmServer("toy-base", { vocab: 16, seed: 0 });
    await server.start();
    try {
      const cfg = {
        trainer: "grpo",
        numGenerations: 4,
        maxCompletionLength: 4,
        progress: false,
        lossType: "dapo",
        model: { type: "toy", vocab: 16 },
        data: { format: "rarl", path: "synth/samples.jsonl", limit: 6 },
        rewards: { rewards: [{ use: "format" }] },
        generation: { backend: "vllm", baseUrl: server.baseUrl, model: "toy-base", syncEvery: 1, retryBackoffMs: 50, maxRetries: 6 },
      };
      fs.writeFileSync(path.join(tmp, "vllm.json"), JSON.stringify(cfg));
      const out = path.join(tmp, "run-vllm");
      const quiet = process.stderr.write.bind(process.stderr);
      process.stderr.write = (() => true) as typeof process.stderr.write;
      let code: number;
      let restartAt = -1;
      try {
        // The server goes away right after the first load_lora_adapter and comes back 200 ms later.
        const bounce = (async () => {
          while (!server.requests.some((r) => r.url === "/v1/load_lora_adapter")) await new Promise((r) => setTimeout(r, 5));
          await server.stop();
          await new Promise((r) => setTimeout(r, 200));
          restartAt = server.requests.length;
          await server.start();
        })();
        code = await runCli(["train", "--config", path.join(tmp, "vllm.json"), "--out", out, "--max-steps", "3"]);
        await bounce;
      } finally {
        process.stderr.write = quiet;
      }
      expect(code).toBe(0);
      expect(lines(path.join(out, "metrics.jsonl")).map((r) => r.step)).toEqual([1, 2, 3]);
      expect(server.requests.filter((r) => r.url === "/v1/completions" && r.status === 200).length).toBeGreaterThanOrEqual(3);
      // The restarted server starts without the adapter. Whichever request reaches it first (a completion for the
      // lost adapter, answered 404 and followed by a reload, or the next step's adapter sync, depending on timing),
      // no completion is served after the restart before an adapter was loaded into the new server.
      expect(restartAt).toBeGreaterThan(0);
      const reload = server.requests.findIndex((r, i) => i >= restartAt && r.url === "/v1/load_lora_adapter" && r.status === 200);
      const served = server.requests.findIndex((r, i) => i >= restartAt && r.url === "/v1/completions" && r.status === 200);
      expect(reload).toBeGreaterThanOrEqual(restartAt);
      expect(served).toBeGreaterThan(reload);
      expect(lines(path.join(out, "metrics.jsonl"))[2]).toHaveProperty("sampling/importance_sampling_ratio/mean");
    } finally {
      await server.stop();
      server.dispose();
    }
  });
});
