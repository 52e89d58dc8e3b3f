import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { initBackend } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GenerationBackendError } from "./errors";
import { latestCheckpoint } from "./checkpoint";
import { readMetrics } from "./metrics";
import { runTrain } from "./run";
import { MockVllmServer } from "./testing/vllm-mock";

// `rarl train` (runTrain) with generation.backend "vllm" against a local server speaking vLLM's protocol
// (src/testing/vllm-mock.ts: 127.0.0.1 only, the toy bigram model behind it). Not a real vLLM.
let tmp: string;
let server: MockVllmServer;
beforeAll(async () => {
  await initBackend();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-vllm-run-"));
  await synthesize(path.join(tmp, "synth"), { n: 6, size: 32, seed: 3 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(async () => {
  await server?.stop();
  server?.dispose();
});

function config(baseUrl: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    trainer: "grpo",
    seed: 1,
    numGenerations: 4,
    maxCompletionLength: 5,
    learningRate: 0.05,
    saveSteps: 100,
    progress: false,
    lossType: "dapo",
    logCompletions: true,
    logCompletionsSteps: 1,
    model: { type: "toy", vocab: 16 },
    data: { format: "rarl", path: path.join(tmp, "synth", "samples.jsonl") },
    rewards: { rewards: [{ use: "format" }] },
    generation: { backend: "vllm", baseUrl, model: "toy-base", retryBackoffMs: 50, maxRetries: 6, adapterDir: path.join(tmp, `adapters-${Math.random().toString(36).slice(2)}`) },
    ...over,
  };
}

describe("rarl train with generation.backend vllm (local vLLM-protocol server)", () => {
  it("runs 5 steps; killing and restarting the server after step 2 loses no step (retry, adapter reloaded)", async () => {
    server = new MockVllmServer("toy-base", { vocab: 16, seed: 0 });
    await server.start();
    let restarted: Promise<void> | null = null;
    const res = await runTrain({
      config: config(server.baseUrl),
      out: path.join(tmp, "restart"),
      maxSteps: 5,
      handleSigint: false,
      onStep: (rec) => {
        if (rec.step !== 2) return;
        restarted = server.stop().then(() => new Promise<void>((r) => setTimeout(() => server.start().then(r), 250)));
      },
    });
    await restarted;
    expect(res.reason).toBe("completed");
    const m = readMetrics(res.runDir);
    expect(m.map((r) => r.step)).toEqual([1, 2, 3, 4, 5]);
    // The restarted server had lost the adapter: 404 for it, then a reload, then samples from it again.
    const lost = server.requests.findIndex((r) => r.status === 404 && r.url === "/v1/completions");
    expect(lost).toBeGreaterThan(0);
    const after = server.requests.slice(lost + 1);
    expect(after[0]).toMatchObject({ url: "/v1/load_lora_adapter", status: 200 });
    expect(after[1]).toMatchObject({ url: "/v1/completions", status: 200, model: server.requests[lost].model });
    // Every step sampled through the server: 6 prompts... one completions request per prompt per step.
    expect(server.requests.filter((r) => r.url === "/v1/completions" && r.status === 200).length).toBeGreaterThanOrEqual(3);
    // vLLM importance-sampling correction (TRL defaults) and the TRL metrics are there.
    for (const k of ["entropy", "clip_ratio/region_mean", "frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio", "rewards/format/mean", "rewards/format/std", "sampling/importance_sampling_ratio/mean"]) {
      expect(m[4], k).toHaveProperty(k);
    }
    expect(fs.readFileSync(path.join(res.runDir, "completions.jsonl"), "utf8").trim().split("\n")).toHaveLength(5);
    expect(fs.existsSync(path.join(res.adapterDir!, "adapter_model.safetensors"))).toBe(true);
  });

  it("a server that stays away stops the run with a clear error and a checkpoint; --resume finishes it with no step lost", async () => {
    server = new MockVllmServer("toy-base", { vocab: 16, seed: 0 });
    await server.start();
    const out = path.join(tmp, "gone");
    const cfg = config(server.baseUrl, { generation: { backend: "vllm", baseUrl: server.baseUrl, model: "toy-base", retryBackoffMs: 20, maxRetries: 2 } });
    const err = await runTrain({
      config: cfg,
      out,
      maxSteps: 4,
      handleSigint: false,
      onStep: (rec) => {
        if (rec.step === 2) void server.stop();
      },
    }).catch((e) => e);
    expect(err).toBeInstanceOf(GenerationBackendError);
    expect(err.code).toBe("VLLM_GAVE_UP");
    expect(err.message).toMatch(/step 3: vLLM at http:\/\/127\.0\.0\.1:\d+ failed \/v1\/completions 3 time\(s\) with backoff.*checkpoint of step 2 in .*--resume/s);
    expect(latestCheckpoint(path.join(out, "checkpoints"))).toBe(err.details.checkpoint);
    expect(readMetrics(out).map((r) => r.step)).toEqual([1, 2]);
    await server.start();
    const before = server.requests.length;
    const res = await runTrain({ config: cfg, out, maxSteps: 4, resume: true, handleSigint: false });
    expect(res.reason).toBe("completed");
    expect(readMetrics(out).map((r) => r.step)).toEqual([1, 2, 3, 4]);
    // On resume the restored adapter is loaded before the first generation.
    expect(server.requests[before]).toMatchObject({ url: "/v1/load_lora_adapter", status: 200 });
    expect(server.requests[before + 1]).toMatchObject({ url: "/v1/completions", status: 200, model: "rarl-2" });
  });

  it("an adapter sync that keeps failing stops after the step with its checkpoint and a clear error", async () => {
    server = new MockVllmServer("toy-base", { vocab: 16, seed: 0 });
    await server.start();
    server.failAdapterLoads = true;
    const out = path.join(tmp, "syncfail");
    const cfg = config(server.baseUrl, { generation: { backend: "vllm", baseUrl: server.baseUrl, model: "toy-base", retryBackoffMs: 10, maxRetries: 2 } });
    const err = await runTrain({ config: cfg, out, maxSteps: 4, handleSigint: false }).catch((e) => e);
    expect(err).toBeInstanceOf(GenerationBackendError);
    expect(err.message).toMatch(/after step 1: vLLM at .* failed \/v1\/load_lora_adapter 3 time\(s\).*step 1 is saved in .*checkpoint-000001/s);
    expect(readMetrics(out).map((r) => r.step)).toEqual([1]);
    expect(server.requests.filter((r) => r.url === "/v1/load_lora_adapter")).toHaveLength(3);
  });

  it("config errors in generation are raised before any model loads", async () => {
    const bad = (generation: unknown) => runTrain({ config: { ...config("http://127.0.0.1:1"), generation }, out: path.join(tmp, "bad") }).catch((e) => e);
    expect((await bad({ backend: "vlm" })).message).toMatch(/"generation.backend" must be "local" or "vllm"/);
    expect((await bad({ backend: "vllm", model: "m" })).message).toMatch(/"generation.baseUrl"/);
    expect((await bad({ backend: "vllm", baseUrl: "http://x", model: "m", syncEvry: 2 })).message).toMatch(/did you mean "syncEvery"/);
    expect((await runTrain({ config: { ...config("http://127.0.0.1:1"), rewardWeights: { formatt: 1 } }, out: path.join(tmp, "bad") }).catch((e) => e)).message).toMatch(
      /"rewardWeights.formatt" names no reward .*did you mean "format"/,
    );
  });
});

describe("rarl train with generation.backend vllm: the server process is killed (SIGKILL) and restarted mid-run", () => {
  it("a SIGKILLed server process restarted on the same port: the run retries, reloads the adapter and loses no step", async () => {
    const { spawn } = await import("node:child_process");
    const { fileURLToPath } = await import("node:url");
    const main = fileURLToPath(new URL("./testing/vllm-mock-main.ts", import.meta.url));
    const tsconfig = fileURLToPath(new URL("../tsconfig.json", import.meta.url));
    const startProc = (port: number) =>
      new Promise<{ proc: import("node:child_process").ChildProcess; port: number }>((resolve, reject) => {
        const proc = spawn(process.execPath, ["--import", "tsx", main, String(port), "toy-base", "16", "0"], {
          env: { ...process.env, TSX_TSCONFIG_PATH: tsconfig },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        let err = "";
        const timer = setTimeout(() => reject(new Error(`mock vLLM process did not start: ${err.slice(-500)}`)), 60_000);
        proc.stderr!.on("data", (d) => {
          err += d;
        });
        proc.stdout!.on("data", (d) => {
          out += d;
          const m = /listening (\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve({ proc, port: Number(m[1]) });
          }
        });
        proc.on("exit", (code) => {
          clearTimeout(timer);
          if (!/listening/.test(out)) reject(new Error(`mock vLLM process exited with ${code}: ${err.slice(-500)}`));
        });
      });
    let { proc, port } = await startProc(0);
    const baseUrl = `http://127.0.0.1:${port}`;
    let restart: Promise<void> | null = null;
    try {
      const res = await runTrain({
        config: config(baseUrl, { generation: { backend: "vllm", baseUrl, model: "toy-base", retryBackoffMs: 200, maxRetries: 8 } }),
        out: path.join(tmp, "sigkill"),
        maxSteps: 4,
        handleSigint: false,
        onStep: (rec) => {
          if (rec.step !== 2) return;
          proc.kill("SIGKILL");
          restart = new Promise<void>((r) => proc.once("exit", () => r())).then(async () => {
            ({ proc, port } = await startProc(port));
          });
        },
      });
      await restart;
      expect(res.reason).toBe("completed");
      expect(readMetrics(res.runDir).map((r) => r.step)).toEqual([1, 2, 3, 4]);
    } finally {
      proc.kill("SIGKILL");
    }
  }, 120_000);
});
