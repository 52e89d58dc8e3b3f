import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fixturesDir, lockFileFor } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runEval } from "../eval/run-eval";
import { captureCli } from "../testing/capture";

// Issue 16 items 4 and 5 at the command line: one writer per output for every command that writes one, and
// files with a torn last line (a crash mid-write) read by a later run, the report and `rarl judge`.

const cliDir = fileURLToPath(new URL("../..", import.meta.url));
const trainChild = fileURLToPath(new URL("../../../grpo/src/testing/train-child.ts", import.meta.url));
const FIXTURE = path.join(fixturesDir(), "qwen2vl-tiny");
let tmp: string;
let sleeper: ChildProcess;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-outputs-"));
  await synthesize(path.join(tmp, "synth"), { n: 8, size: 56, seed: 4 });
  sleeper = spawn("sleep", ["600"], { stdio: "ignore" });
  fs.writeFileSync(path.join(tmp, "grpo.json"), JSON.stringify(config));
});

/** A toy GRPO run: 4 training samples, a checkpoint every step. */
const config = {
  trainer: "grpo",
  numGenerations: 4,
  maxCompletionLength: 4,
  saveSteps: 1,
  progress: false,
  model: { type: "toy", vocab: 16 },
  data: { format: "rarl", path: "synth/samples.jsonl", split: "train", limit: 4 },
  rewards: { rewards: [{ use: "format" }, { use: "accuracy", weight: 2 }], scorer: "lexical-f1" },
};
afterAll(() => {
  sleeper.kill("SIGKILL");
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** runCli with stderr captured (log lines included: the default log sink writes to stderr). */
async function cli(argv: string[]): Promise<{ code: number; stderr: string }> {
  const r = await captureCli(argv);
  return { code: r.code, stderr: r.err };
}

/** A lock on `target` as another process would leave it: held by a live PID, or by one that has exited. */
function holdLock(target: string, pid: number, command = "rarl other") {
  fs.writeFileSync(lockFileFor(target), JSON.stringify({ pid, host: os.hostname(), command, since: "2026-12-04T00:00:00.000Z", token: `t${pid}` }));
}
function deadPid(): number {
  const r = spawnSync("sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(r.stdout.trim());
}

const rewardsCfg = () => {
  const f = path.join(tmp, "rewards.json");
  fs.writeFileSync(f, JSON.stringify({ rewards: [{ use: "format" }, { use: "accuracy", weight: 2 }], scorer: "lexical-f1" }));
  const input = path.join(tmp, "completions.jsonl");
  fs.writeFileSync(input, `${JSON.stringify({ id: 1, completion: "<think>t</think><answer>no</answer>", answer: "No", answer_type: "closed" })}\n`);
  return { f, input };
};

describe("one writer per output (issue 16 item 4)", () => {
  it("rarl train: a second run into a run folder being trained is refused naming the first's PID; the first ends intact", async () => {
    const out = path.join(tmp, "run");
    const spec = path.join(tmp, "spec.json");
    fs.writeFileSync(spec, JSON.stringify({ config: { ...config, model: { type: "slow-save-toy", vocab: 16 } }, configDir: tmp, out, maxSteps: 5, slowSaveMs: 600 }));
    const first = spawn(process.execPath, ["--import", "tsx", trainChild, spec], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RARL_LOG_LEVEL: "warn" } });
    let stdout = "";
    let stderr1 = "";
    first.stdout!.on("data", (d) => (stdout += d));
    first.stderr!.on("data", (d) => (stderr1 += d));
    const done = new Promise<number | null>((r) => first.on("close", r));
    while (!stdout.includes("saving")) await new Promise((r) => setTimeout(r, 5));
    const second = await cli(["train", "--config", path.join(tmp, "grpo.json"), "--out", out, "--max-steps", "5"]);
    expect(first.exitCode, "the first run ended before the second started: no overlap to test").toBeNull();
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`${out} is being written by another process (PID ${first.pid}, "rarl train"`);
    expect(await done, stderr1).toBe(0);
    const steps = fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l).step);
    expect(steps).toEqual([1, 2, 3, 4, 5]);
    expect(fs.existsSync(path.join(out, "adapter", "adapter_model.safetensors"))).toBe(true);
  });

  it("rarl eval, reward, data export and data synth refuse an output held by a live process, naming its PID", async () => {
    const pid = sleeper.pid!;
    const { f, input } = rewardsCfg();
    const data = path.join(tmp, "synth", "samples.jsonl");
    const cases: Array<[string, string[]]> = [
      [path.join(tmp, "held-preds.jsonl"), ["eval", "--model", FIXTURE, "--data", `rarl:${data}`, "--limit", "1", "--out"]],
      [path.join(tmp, "held-scored.jsonl"), ["reward", "--config", f, "--input", input, "--out"]],
      [path.join(tmp, "held-export", "samples.jsonl"), ["data", "export", data, "--format", "rarl", "--out"]],
      [path.join(tmp, "held-synth"), ["data", "synth", "--n", "4", "--size", "32", "--out"]],
    ];
    for (const [out, argv] of cases) {
      fs.mkdirSync(path.dirname(out), { recursive: true });
      holdLock(out, pid);
      const r = await cli([...argv, out]);
      expect({ cmd: argv[0], code: r.code }).toEqual({ cmd: argv[0], code: 1 });
      expect(r.stderr).toContain(`${out} is being written by another process (PID ${pid}, "rarl other"`);
      expect(fs.existsSync(out)).toBe(false);
      fs.rmSync(lockFileFor(out));
    }
  });

  it("the demo (examples/demo/run.mjs) refuses a runs folder held by a live process, naming its PID", () => {
    const runs = path.join(tmp, "demo-runs");
    holdLock(runs, sleeper.pid!, "examples/demo/run.mjs");
    const r = spawnSync(process.execPath, [path.join(cliDir, "../../examples/demo/run.mjs"), "--quick"], { encoding: "utf8", env: { ...process.env, RARL_DEMO_DIR: runs } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`demo: ${runs} is being written by another process (PID ${sleeper.pid}, "examples/demo/run.mjs"`);
    expect(fs.existsSync(runs)).toBe(false);
    fs.rmSync(lockFileFor(runs));
  });

  it("a lock left by a dead process is taken over with a warning (reward, data export)", async () => {
    const { f, input } = rewardsCfg();
    const data = path.join(tmp, "synth", "samples.jsonl");
    const scored = path.join(tmp, "stale-scored.jsonl");
    const dead = deadPid();
    holdLock(scored, dead);
    const r1 = await cli(["reward", "--config", f, "--input", input, "--out", scored, "--quiet"]);
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stderr).toMatch(new RegExp(`taking over the lock of .*stale-scored\\.jsonl: its holder PID ${dead} .*is no longer running`));
    expect(fs.readFileSync(scored, "utf8").trim().split("\n")).toHaveLength(1);
    const exp = path.join(tmp, "stale-export", "samples.jsonl");
    fs.mkdirSync(path.dirname(exp));
    holdLock(exp, dead);
    const r2 = await cli(["data", "export", data, "--format", "rarl", "--out", exp]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toMatch(/is no longer running/);
    expect(fs.existsSync(lockFileFor(exp))).toBe(false);
  });
});

describe("files with a torn last line are read and the work goes on (issue 16 item 5)", () => {
  it("rarl eval killed at a random point leaves the previous predictions whole; rarl judge reads predictions with a torn last line", async () => {
    const data = `rarl:${path.join(tmp, "synth", "samples.jsonl")}`;
    const out = path.join(tmp, "preds.jsonl");
    await runEval({ model: FIXTURE, data, prompt: "reasoning", limit: 2, out, maxNewTokens: 4, batchSize: 2 });
    const before = fs.readFileSync(out);
    // a second eval onto the same file, SIGKILLed at a random point of its run (loading, generating or writing)
    const child = spawn(process.execPath, ["--import", "tsx", "src/bin.ts", "eval", "--model", FIXTURE, "--data", data, "--limit", "4", "--max-new-tokens", "4", "--out", out, "--quiet"], {
      cwd: cliDir,
      stdio: "ignore",
      env: { ...process.env, RARL_LOG_LEVEL: "warn" },
    });
    const closed = new Promise<void>((r) => child.on("close", () => r()));
    const delay = Math.round(1500 + Math.random() * 3000);
    await new Promise((r) => setTimeout(r, delay));
    child.kill("SIGKILL");
    await closed;
    // atomic write: the old file, or (when the kill came after the rename) the new one, whole; never a mix
    const after = fs.readFileSync(out);
    const whole = after.equals(before) || after.toString("utf8").trim().split("\n").map((l) => JSON.parse(l)).length === 4;
    expect(whole, `killed after ${delay} ms`).toBe(true);
    // a later eval goes on over any temp file the killed one left
    await runEval({ model: FIXTURE, data, prompt: "reasoning", limit: 2, out, maxNewTokens: 4, batchSize: 2 });
    expect(fs.readFileSync(out).equals(before)).toBe(true);

    // predictions whose last record was cut off: the judge scores the whole ones and warns
    const text = fs.readFileSync(out, "utf8");
    fs.writeFileSync(out, text.slice(0, text.length - 20));
    const judged = path.join(tmp, "judged.jsonl");
    const r = await cli(["judge", "--predictions", out, "--judge", "offline", "--out", judged, "--quiet"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/preds\.jsonl:2: ignoring a torn last line/);
    expect(r.stderr).toContain("1 samples, 1 scored, 0 failed, 0 lost");
    // results with a torn last line: the report reads the whole rows and warns
    fs.appendFileSync(judged, '{"id": "zz", "dataset": "synth", "judge": "off');
    const rep = await cli(["report", judged]);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stderr).toMatch(/judged\.jsonl:2: ignoring a torn last line/);
  });

  it("metrics.jsonl with a torn last line: rarl report --run reads it, and a resumed rarl train goes on from its checkpoint", async () => {
    const out = path.join(tmp, "torn-run");
    expect((await cli(["train", "--config", path.join(tmp, "grpo.json"), "--out", out, "--max-steps", "2"])).code).toBe(0);
    const metrics = path.join(out, "metrics.jsonl");
    fs.appendFileSync(metrics, '{"step": 3, "loss": 0.1');
    const rep = await cli(["report", "--run", out, "--html", path.join(tmp, "report.html")]);
    expect(rep.code, rep.stderr).toBe(0);
    expect(rep.stderr).toMatch(/metrics\.jsonl:3: ignoring a torn last line/);
    expect(fs.readFileSync(path.join(tmp, "report.html"), "utf8")).toContain("<html");
    const again = await cli(["train", "--config", path.join(tmp, "grpo.json"), "--out", out, "--max-steps", "4", "--resume"]);
    expect(again.code, again.stderr).toBe(0);
    expect(fs.readFileSync(metrics, "utf8").trim().split("\n").map((l) => JSON.parse(l).step)).toEqual([1, 2, 3, 4]);
  });
});
