// Hostile state on disk: a corrupt newest checkpoint and temp folders left by interrupted writes.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { captureLogsAsync, initBackend } from "@rarl/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listCheckpoints } from "./checkpoint";
import { GRPO_DEFAULTS, type GRPOConfig } from "./config";
import { CheckpointError } from "./errors";
import { GRPOTrainer } from "./grpo-trainer";
import { readMetrics } from "./metrics";
import type { RewardScorer } from "./policy";
import { ToyPolicy, type ToyPrompt } from "./testing/toy-policy";

const examples = Array.from({ length: 6 }, (_, i) => ({ id: `ex${i}`, first: i % 5 }));
type Ex = (typeof examples)[number];
const buildPrompt = (e: Ex): ToyPrompt => ({ id: e.id, ids: [e.first] });
const rewards: RewardScorer<Ex> = async (items) => ({ target: items.map((it) => it.completionIds.filter((t) => t === 3).length / Math.max(1, it.completionIds.length)) });
const cfg: GRPOConfig = { ...GRPO_DEFAULTS, numGenerations: 4, promptsPerStep: 1, maxCompletionLength: 4, learningRate: 0.05, maxSteps: 8, saveSteps: 2, saveTotalLimit: 3, progress: false };

let tmp: string;
beforeAll(async () => {
  await initBackend();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-fallback-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function trainer(runDir: string, seed = 1) {
  const policy = new ToyPolicy({ seed: 1, loraSeed: seed });
  return { policy, t: new GRPOTrainer({ config: cfg, policy, examples, buildPrompt, rewards, runDir }) };
}

/** Runs `fn` with log lines captured. */
async function withLogs<T>(fn: () => Promise<T>): Promise<{ value: T; logs: string }> {
  const { value, lines } = await captureLogsAsync(fn);
  return { value, logs: lines.join("\n") };
}

/** A run stopped after step 6 with checkpoints 2, 4, 6. */
async function interruptedRun(name: string): Promise<string> {
  const dir = path.join(tmp, name);
  const a = trainer(dir);
  const r = await a.t.train({ handleSigint: false, onStep: (rec) => rec.step === 6 && a.t.requestStop() });
  expect(r.reason).toBe("interrupted");
  a.policy.dispose();
  expect(listCheckpoints(path.join(dir, "checkpoints")).map((c) => c.step)).toEqual([2, 4, 6]);
  return dir;
}

function truncate(file: string) {
  const buf = fs.readFileSync(file);
  fs.writeFileSync(file, buf.subarray(0, Math.floor(buf.length / 2)));
}

describe("--resume with a corrupt newest checkpoint", () => {
  it("falls back to the previous valid checkpoint with a warning and ends with the weights of an uninterrupted run", async () => {
    const full = trainer(path.join(tmp, "full"));
    await full.t.train({ handleSigint: false });
    const want = full.policy.trainableVariables().map((v) => Array.from(v.dataSync()));
    full.policy.dispose();

    const dir = await interruptedRun("corrupt");
    const ck = path.join(dir, "checkpoints");
    truncate(path.join(ck, "checkpoint-000006", "trainable.safetensors"));
    const b = trainer(dir, 99); // another LoRA init: the weights must come from checkpoint 4
    const { value: r, logs } = await withLogs(() => b.t.train({ resume: true, handleSigint: false }));
    expect(r.steps).toBe(8);
    expect(logs).toMatch(/checkpoint unreadable, set aside; falling back to the previous one/);
    expect(logs).toContain("checkpoint-000006");
    expect(b.policy.trainableVariables().map((v) => Array.from(v.dataSync()))).toEqual(want);
    expect(readMetrics(dir).map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(fs.existsSync(path.join(ck, "checkpoint-000006.corrupt"))).toBe(true); // kept for inspection, not listed
    expect(listCheckpoints(ck).map((c) => c.step)).toEqual([4, 6, 8]); // 6 written again by the resumed run
    b.policy.dispose();
  });

  it("a bad trainer_state.json falls back too; when no checkpoint reads, the error lists each one", async () => {
    const dir = await interruptedRun("all-corrupt");
    const ck = path.join(dir, "checkpoints");
    fs.writeFileSync(path.join(ck, "checkpoint-000006", "trainer_state.json"), '{"step": 6, "cur');
    const b = trainer(dir);
    const { value: r } = await withLogs(() => b.t.train({ resume: true, handleSigint: false }));
    expect(r.steps).toBe(8);
    b.policy.dispose();

    const dir2 = await interruptedRun("none-valid");
    const ck2 = path.join(dir2, "checkpoints");
    for (const c of listCheckpoints(ck2)) truncate(path.join(c.dir, "optimizer.safetensors"));
    const c = trainer(dir2);
    const err = await withLogs(() => c.t.train({ resume: true, handleSigint: false })).catch((e) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.code).toBe("CKPT_CORRUPT");
    for (const s of ["000002", "000004", "000006"]) expect(err.message).toContain(`checkpoint-${s}: `);
    c.policy.dispose();
  });
});

describe("stale temp folders of interrupted writes", () => {
  it("are removed at the start of a run when their writer is dead; a live writer's are kept", async () => {
    const dir = await interruptedRun("stale");
    const ck = path.join(dir, "checkpoints");
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!; // has exited
    const staleCk = path.join(ck, `.tmp-checkpoint-000007-${dead}-1700000000000`);
    const staleAdapter = path.join(dir, `.tmp-adapter-${dead}`);
    const live = path.join(ck, `.tmp-checkpoint-000007-${process.ppid}-1700000000000`);
    for (const d of [staleCk, staleAdapter, live]) {
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, "trainable.safetensors"), "partial");
    }
    const b = trainer(dir);
    const { logs } = await withLogs(() => b.t.train({ resume: true, handleSigint: false }));
    b.policy.dispose();
    expect(fs.existsSync(staleCk)).toBe(false);
    expect(fs.existsSync(staleAdapter)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(logs).toMatch(/removed a temp folder left by an interrupted write/);
  });
});
