// Issue 16, item 6: hostile input to the CLI, each case reproduced as a user would type it.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fixturesDir } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { afterAll, beforeAll, describe, expect, it, } from "vitest";
import { type FaultServer, startFaultServer } from "../../../judge/src/testing/fault-server";
import { readJsonl } from "../report/io";
import { captureCli } from "../testing/capture";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-cli-hostile-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const capture = captureCli;

const pred = (id: string, prediction = "yes") => JSON.stringify({ id, dataset: "Ours", question: "Is it?", reference: "yes", prediction });

describe("outputs that are inputs or folders", () => {
  it("judge --out equal to --predictions (same file, other spelling or a link) is refused and the input kept", async () => {
    const preds = path.join(dir, "preds.jsonl");
    const text = `${pred("a")}\n${pred("b", "no")}\n`;
    fs.writeFileSync(preds, text);
    fs.symlinkSync(preds, path.join(dir, "preds-link.jsonl"));
    for (const out of [preds, path.join(dir, ".", "sub", "..", "preds.jsonl"), path.join(dir, "preds-link.jsonl")]) {
      fs.mkdirSync(path.join(dir, "sub"), { recursive: true });
      const r = await capture(["judge", "--predictions", preds, "--judge", "offline", "--out", out, "--quiet", "--no-cache"]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/--out .* is the same file as --predictions .*preds\.jsonl; writing it would overwrite the input/);
      expect(fs.readFileSync(preds, "utf8")).toBe(text);
    }
  });

  it("data export onto its own input is refused and the input kept", async () => {
    const ds = path.join(dir, "ds");
    fs.mkdirSync(ds, { recursive: true });
    const file = path.join(ds, "samples.jsonl");
    const text = `${JSON.stringify({ id: "e", image: { bytes: [1, 2, 3] }, question: "q?", answer: "yes" })}\n`;
    fs.writeFileSync(file, text);
    const r = await capture(["data", "export", "--format", "jsonl", file, "--verify-images", "none", "--out", file]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--out .*samples\.jsonl is the same file as <path> .*samples\.jsonl/);
    const r2 = await capture(["data", "export", "--format", "jsonl", ds, "--verify-images", "none", "--out", file]);
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/is a file inside <path>/);
    expect(fs.readFileSync(file, "utf8")).toBe(text);
    expect(fs.existsSync(path.join(ds, "images"))).toBe(false);
  });

  it("--out pointing at a folder is a typed error naming the path, not a bare EISDIR", async () => {
    const preds = path.join(dir, "p2.jsonl");
    fs.writeFileSync(preds, `${pred("a")}\n`);
    const folder = path.join(dir, "a-folder");
    fs.mkdirSync(folder);
    const r = await capture(["judge", "--predictions", preds, "--judge", "offline", "--out", folder, "--quiet", "--no-cache"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`--out ${folder} is a folder; expected a file path`);
    expect(r.err).not.toMatch(/EISDIR/);
    const ds = path.join(dir, "ds2");
    fs.mkdirSync(ds);
    fs.writeFileSync(path.join(ds, "s.jsonl"), `${JSON.stringify({ id: "e", image: { bytes: [1] }, question: "q?", answer: "yes" })}\n`);
    const r2 = await capture(["data", "export", "--format", "jsonl", path.join(ds, "s.jsonl"), "--verify-images", "none", "--out", folder]);
    expect(r2.code).toBe(1);
    expect(r2.err).toContain(`--out ${folder} is a folder; expected a file path`);
  });
});

describe("rarl judge exit codes", () => {
  let srv: FaultServer;
  beforeAll(async () => {
    srv = await startFaultServer({ defaultRetryAfter: "0" });
  });
  afterAll(async () => srv.close());

  it("exits non-zero and prints the count when samples end failed; --allow-failures relaxes it", async () => {
    const preds = path.join(dir, "allfail.jsonl");
    // the fault server counts attempts per question text: a fresh tag per run gives fresh faults
    let tag = 0;
    const q = (i: number, f: string) => JSON.stringify({ id: `f${i}`, dataset: "Ours", question: `run${tag} q${i} #fault=${f}`, reference: "yes", prediction: "yes" });
    const write = (...faults: string[]) => {
      tag++;
      fs.writeFileSync(preds, `${faults.map((f, i) => q(i, f)).join("\n")}\n`);
    };
    write("401", "401", "401");
    const args = ["judge", "--predictions", preds, "--judge", "openai:gpt-4o-mini", "--base-url", `${srv.url}/v1`, "--api-key-env", "RARL_HOSTILE_KEY", "--no-cache", "--quiet", "--max-attempts", "1"];
    process.env.RARL_HOSTILE_KEY = "sk-test";
    try {
      const r = await capture([...args, "--out", path.join(dir, "allfail-out.jsonl")]);
      expect(r.code).toBe(2);
      expect(r.err).toContain("rarl judge: 3 of 3 samples ended without a score (3 failed, 0 lost); exit 2");
      write("401", "401", "401");
      const ok = await capture([...args, "--out", path.join(dir, "allfail-out2.jsonl"), "--allow-failures"]);
      expect(ok.code).toBe(0);
      expect(ok.err).toContain("3 of 3 samples ended without a score");
      // one failure among successes is enough
      write("ok", "401");
      const one = await capture([...args, "--out", path.join(dir, "onefail-out.jsonl")]);
      expect(one.code).toBe(2);
      expect(one.err).toContain("1 of 2 samples ended without a score");
    } finally {
      delete process.env.RARL_HOSTILE_KEY;
    }
  });
});

describe("messages", () => {
  it("a bad --set value is blamed on the --set argument, not on the config file", async () => {
    const cfgFile = path.join(dir, "set.json");
    fs.writeFileSync(cfgFile, JSON.stringify({ trainer: "grpo", beta: 0.04, model: { type: "toy" }, data: { format: "rarl", path: "." }, rewards: { rewards: [{ use: "format" }] } }));
    const r = await capture(["train", "--config", cfgFile, "--set", 'beta="abc"', "--set", "numGenerations=-3", "--set", "model.lora.r=8", "--dry-run"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('--set beta="abc": beta must be number');
    expect(r.err).toContain("--set numGenerations=-3: numGenerations must be >= 2");
    expect(r.err).toContain('--set model.lora.r=8: unknown field "model.lora"');
    expect(r.err).not.toContain(`${cfgFile}: beta`);
    // an error that is the file's own stays on the file
    fs.writeFileSync(cfgFile, JSON.stringify({ trainer: "grpo", beta: "x", model: { type: "toy" }, data: { format: "rarl", path: "." }, rewards: { rewards: [{ use: "format" }] } }));
    const f = await capture(["train", "--config", cfgFile, "--set", "numGenerations=4", "--dry-run"]);
    expect(f.code).toBe(1);
    expect(f.err).toContain(`${cfgFile}: beta must be number`);
    expect(f.err).not.toContain("--set numGenerations=4:");
  });
});

/** A toy GRPO config over a small synthetic set (written once per file). */
async function toyConfig(extra: Record<string, unknown> = {}): Promise<string> {
  const synth = path.join(dir, "synth");
  if (!fs.existsSync(path.join(synth, "samples.jsonl"))) await synthesize(synth, { n: 8, size: 32, seed: 3 });
  const cfg = {
    trainer: "grpo",
    numGenerations: 2,
    maxCompletionLength: 4,
    saveSteps: 2,
    progress: false,
    model: { type: "toy", vocab: 16 },
    data: { format: "rarl", path: "synth/samples.jsonl", split: "train", limit: 4 },
    rewards: { rewards: [{ use: "format" }], scorer: "lexical-f1" },
    ...extra,
  };
  const f = path.join(dir, `toy-${Object.keys(extra).join("-") || "base"}.json`);
  fs.writeFileSync(f, JSON.stringify(cfg));
  return f;
}

describe("rarl train into an existing run folder", () => {
  it("is refused without --resume or --overwrite (nothing touched); --overwrite clears the old run; both flags are refused", async () => {
    const cfg = await toyConfig();
    const out = path.join(dir, "run-exists");
    expect((await capture(["train", "--config", cfg, "--out", out, "--max-steps", "3"])).code).toBe(0);
    fs.writeFileSync(path.join(out, "notes.txt"), "mine");
    const snapshot = () => ({
      metrics: fs.readFileSync(path.join(out, "metrics.jsonl"), "utf8"),
      ckpts: fs.readdirSync(path.join(out, "checkpoints")).sort(),
      adapter: fs.readFileSync(path.join(out, "adapter", "adapter_model.safetensors")),
    });
    const before = snapshot();
    expect(before.ckpts).toEqual(["checkpoint-000002", "checkpoint-000003"]);

    const r = await capture(["train", "--config", cfg, "--out", out, "--max-steps", "1"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`RUN_DIR ${out} already holds a run (metrics.jsonl, checkpoints, adapter); pass --resume to continue it, --overwrite`);
    expect(snapshot()).toEqual(before);

    const both = await capture(["train", "--config", cfg, "--out", out, "--resume", "--overwrite"]);
    expect(both.code).toBe(1);
    expect(both.err).toMatch(/--resume and --overwrite exclude each other/);
    expect(snapshot()).toEqual(before);

    const o = await capture(["train", "--config", cfg, "--out", out, "--max-steps", "1", "--overwrite"]);
    expect(o.code).toBe(0);
    expect(readJsonl<any>(path.join(out, "metrics.jsonl")).map((x) => x.step)).toEqual([1]);
    expect(fs.readdirSync(path.join(out, "checkpoints"))).toEqual(["checkpoint-000001"]); // old checkpoint-000002/3 gone
    expect(fs.readFileSync(path.join(out, "notes.txt"), "utf8")).toBe("mine"); // not a run file: kept
    expect(fs.readdirSync(out).filter((n) => n.startsWith(".tmp-"))).toEqual([]);
    // a later --resume continues the new run, not the old one
    expect((await capture(["train", "--config", cfg, "--out", out, "--max-steps", "2", "--resume"])).code).toBe(0);
    expect(readJsonl<any>(path.join(out, "metrics.jsonl")).map((x) => x.step)).toEqual([1, 2]);
  });
});

describe("SIGTERM during rarl train (docker stop, Slurm)", () => {
  it.each([
    ["SIGTERM", 143],
    ["SIGINT", 130],
  ] as const)("%s checkpoints after the current step and exits %i; --resume continues", async (sig, exitCode) => {
    const cfg = await toyConfig({ saveSteps: 1000000 });
    const out = path.join(dir, `run-${sig}`);
    const cliDir = fileURLToPath(new URL("../..", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", "src/bin.ts", "train", "--config", cfg, "--out", out, "--max-steps", "1000000"], {
      cwd: cliDir,
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let stderr = "";
      child.stderr!.on("data", (d) => (stderr += d));
      const done = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
      const metrics = path.join(out, "metrics.jsonl");
      const t0 = Date.now();
      while (!(fs.existsSync(metrics) && fs.readFileSync(metrics, "utf8").split("\n").length > 3)) {
        if (Date.now() - t0 > 60_000) throw new Error(`no training steps within 60 s: ${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      child.kill(sig);
      const code = await Promise.race([done, new Promise<string>((r) => setTimeout(() => r("still running 30 s after the signal"), 30_000))]);
      expect(stderr).toMatch(new RegExp(`rarl train: interrupted by ${sig} at step \\d+/1000000; checkpoint .*checkpoint-\\d+ \\(continue with --resume\\)`));
      expect(code).toBe(exitCode);
      const steps = readJsonl<any>(metrics).map((x) => x.step);
      const last = steps[steps.length - 1];
      expect(fs.readdirSync(path.join(out, "checkpoints"))).toEqual([`checkpoint-${String(last).padStart(6, "0")}`]);
      const r = await capture(["train", "--config", cfg, "--out", out, "--max-steps", String(last + 1), "--resume"]);
      expect(r.code).toBe(0);
      expect(readJsonl<any>(metrics).map((x) => x.step)).toEqual([...steps, last + 1]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }, 120_000);
});

describe("rarl train --dry-run refuses sizes that cannot fit", () => {
  async function qwenConfig(): Promise<string> {
    await toyConfig(); // writes the synthetic set
    const f = path.join(dir, "qwen-dry.json");
    const cfg = {
      trainer: "grpo",
      numGenerations: 2,
      maxCompletionLength: 8,
      model: { type: "qwen2vl", path: path.join(fixturesDir(), "qwen2vl-tiny") },
      data: { format: "rarl", path: "synth/samples.jsonl", split: "train" },
      rewards: { rewards: [{ use: "format" }], scorer: "lexical-f1" },
    };
    fs.writeFileSync(f, JSON.stringify(cfg));
    return f;
  }

  it("--set numGenerations=1000000000 fails (estimate above this machine's memory); a stated --memory-gib is honoured", async () => {
    const cfg = await qwenConfig();
    const ok = await capture(["train", "--config", cfg, "--dry-run", "--gflops", "10"]);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/config OK/);
    expect(ok.out).toMatch(/peak +\d+\.\d+ GiB \(limit \d+\.\d+ GiB: this machine's \(os\.totalmem\)\)/);

    const huge = await capture(["train", "--config", cfg, "--dry-run", "--gflops", "10", "--set", "numGenerations=1000000000"]);
    expect(huge.code).toBe(1);
    expect(huge.out).not.toMatch(/config OK/);
    expect(huge.out).toMatch(/problem memory: the estimated peak \d+\.\d+ GiB exceeds this machine's \(os\.totalmem\) memory/);
    expect(huge.err).toMatch(/rarl: dry run: training would fail:\n {2}memory: /);

    const small = await capture(["train", "--config", cfg, "--dry-run", "--gflops", "10", "--memory-gib", "0.001"]);
    expect(small.code).toBe(1);
    expect(small.out).toMatch(/exceeds stated \(--memory-gib\) memory 0\.00 GiB/);
  });

  it("fails when a prompt is longer than the model takes, naming the file, row and sample id", async () => {
    const cfg = await qwenConfig();
    const lines = fs.readFileSync(path.join(dir, "synth", "samples.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const huge = path.join(dir, "synth", "huge.jsonl");
    const rows = lines.map((r, i) => ({ ...r, split: "train", ...(i === 1 ? { id: "huge-q", question: "Is there a lesion? ".repeat(110_000) } : {}) }));
    fs.writeFileSync(huge, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const r = await capture(["train", "--config", cfg, "--dry-run", "--gflops", "10", "--set", `data.path="${huge}"`, "--set", 'data.split="train"']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/problem data: 1 prompt\(s\) do not fit the model: .*maxPositions 32768/);
    expect(r.out).toMatch(/huge\.jsonl, row 2, sample "huge-q": prompt of more than \d+ tokens/);
  });

  it("fails when a data row would stop training, naming it", async () => {
    const cfg = await qwenConfig();
    const bad = path.join(dir, "synth", "bad.jsonl");
    const lines = fs.readFileSync(path.join(dir, "synth", "samples.jsonl"), "utf8").trim().split("\n");
    const row = JSON.parse(lines[1]);
    fs.writeFileSync(bad, `${JSON.stringify({ ...JSON.parse(lines[0]), split: "train" })}\n${JSON.stringify({ ...row, id: "bad-1", split: "train", image: "images/none.png" })}\n`);
    const r = await capture(["train", "--config", cfg, "--dry-run", "--gflops", "10", "--set", `data.path="${bad}"`, "--set", 'data.split="train"']);
    expect(r.err).toMatch(/training would fail/);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/problem data: 1 bad row\(s\) would stop training \(first: .*bad\.jsonl, row 2: image file not found/);
  });
});
