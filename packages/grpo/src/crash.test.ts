import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { captureLogs, OutputLockedError } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latestCheckpoint, listCheckpoints } from "./checkpoint";
import { MetricsWriter, readMetrics } from "./metrics";
import { runTrain } from "./run";

// Issue 16 items 4 and 5: SIGKILL at random points of a training process (a checkpoint half written among them),
// then --resume reaches the adapter bytes of an uninterrupted run; one writer per run folder.

const child = fileURLToPath(new URL("./testing/train-child.ts", import.meta.url));
const MAX_STEPS = 8;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-crash-"));
  await synthesize(path.join(tmp, "synth"), { n: 8, size: 32, seed: 5 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const config = (type: string) => ({
  trainer: "grpo",
  numGenerations: 4,
  maxCompletionLength: 4,
  saveSteps: 1,
  saveTotalLimit: 2,
  progress: false,
  seed: 3,
  model: { type, vocab: 16 },
  data: { format: "rarl", path: "synth/samples.jsonl", split: "train", limit: 6 },
  rewards: { rewards: [{ use: "format" }, { use: "accuracy", weight: 2 }], scorer: "lexical-f1" },
});

/** Starts the training child; `lines` collects its stdout lines as they come. */
function start(out: string, o: { resume?: boolean; slowSaveMs: number }): { proc: ChildProcess; lines: string[]; done: Promise<{ code: number | null; signal: string | null; stderr: string }> } {
  const spec = path.join(tmp, `spec-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(spec, JSON.stringify({ config: config("slow-save-toy"), configDir: tmp, out, maxSteps: MAX_STEPS, resume: o.resume, slowSaveMs: o.slowSaveMs }));
  const proc = spawn(process.execPath, ["--import", "tsx", child, spec], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RARL_LOG_LEVEL: "warn" } });
  const lines: string[] = [];
  let buf = "";
  let stderr = "";
  proc.stdout!.on("data", (d) => {
    buf += d;
    const parts = buf.split("\n");
    buf = parts.pop()!;
    lines.push(...parts);
  });
  proc.stderr!.on("data", (d) => (stderr += d));
  return { proc, lines, done: new Promise((r) => proc.on("close", (code, signal) => r({ code, signal, stderr }))) };
}

const until = async (cond: () => boolean, what: string, ms = 60_000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

/** mulberry32: the kill points are random but the same on every run of the test. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const adapterBytes = (runDir: string) => fs.readFileSync(path.join(runDir, "adapter", "adapter_model.safetensors"));

describe("crash safety of rarl train (SIGKILL)", () => {
  it("killed at random points, checkpoint writes among them, --resume ends with the adapter bytes of an uninterrupted run", async () => {
    const ref = await runTrain({ config: config("toy"), configDir: tmp, out: path.join(tmp, "ref"), maxSteps: MAX_STEPS, handleSigint: false });
    expect(ref.reason).toBe("completed");
    const want = adapterBytes(ref.runDir);

    const out = path.join(tmp, "killed");
    const rand = rng(16);
    const slowSaveMs = 300;
    let kills = 0;
    let midWrite = 0;
    for (let round = 0; round < 6; round++) {
      const resume = latestCheckpoint(path.join(out, "checkpoints")) !== null;
      if (!resume) fs.rmSync(out, { recursive: true, force: true }); // nothing to resume: start afresh
      const run = start(out, { resume, slowSaveMs });
      if (kills < 3) {
        // rounds 0 and 2: during a checkpoint write (inside its temp folder); round 1: anywhere after start-up
        if (round !== 1) {
          const nth = 1 + Math.floor(rand() * 2);
          await until(() => run.lines.filter((l) => l.includes(".tmp-checkpoint-")).length >= nth || run.lines.some((l) => l.startsWith("done")), "a checkpoint write");
          await new Promise((r) => setTimeout(r, rand() * slowSaveMs * 0.4)); // leaves >= 180 ms for the signal to land
        } else {
          await until(() => run.lines.length > 0, "the first step");
          await new Promise((r) => setTimeout(r, rand() * 400));
        }
        if (!run.lines.some((l) => l.startsWith("done"))) {
          run.proc.kill("SIGKILL");
          const r = await run.done;
          if (r.signal === "SIGKILL") {
            kills++;
            const ckpts = path.join(out, "checkpoints");
            const tmpDirs = fs.existsSync(ckpts) ? fs.readdirSync(ckpts).filter((n) => n.startsWith(".tmp-")) : [];
            if (round !== 1 && tmpDirs.length > 0) midWrite++;
            // every checkpoint under its final name is whole; metrics.jsonl reads (a torn last line is ignored)
            for (const c of listCheckpoints(ckpts)) {
              expect(JSON.parse(fs.readFileSync(path.join(c.dir, "trainer_state.json"), "utf8")).step).toBe(c.step);
              for (const f of ["trainable.safetensors", "optimizer.safetensors", "adapter/adapter_model.safetensors"]) expect(fs.existsSync(path.join(c.dir, f))).toBe(true);
            }
            const steps = readMetrics(out).map((m) => m.step);
            expect(steps).toEqual(steps.map((_, i) => steps[0] + i));
            continue;
          }
        }
      }
      const r = await run.done;
      expect(r.code, r.stderr).toBe(0);
      break;
    }
    expect(kills).toBe(3);
    expect(midWrite).toBeGreaterThanOrEqual(1); // at least one kill hit a checkpoint half written
    expect(readMetrics(out).map((m) => m.step)).toEqual(Array.from({ length: MAX_STEPS }, (_, i) => i + 1));
    expect(adapterBytes(out).equals(want)).toBe(true);
  });

  it("one writer per run folder: a second runTrain into it is refused naming the first's PID; the first ends intact", async () => {
    const out = path.join(tmp, "locked");
    const first = start(out, { slowSaveMs: 300 });
    await until(() => first.lines.some((l) => l.startsWith("saving")), "the first checkpoint");
    let err: unknown;
    try {
      await runTrain({ config: config("toy"), configDir: tmp, out, maxSteps: MAX_STEPS, handleSigint: false });
    } catch (e) {
      err = e;
    }
    expect(first.proc.exitCode, "the first run ended before the second started: no overlap to test").toBeNull();
    expect(err).toBeInstanceOf(OutputLockedError);
    expect((err as Error).message).toContain(`${out} is being written by another process (PID ${first.proc.pid}, "rarl train"`);
    const r = await first.done;
    expect(r.code, r.stderr).toBe(0);
    expect(readMetrics(out).map((m) => m.step)).toEqual(Array.from({ length: MAX_STEPS }, (_, i) => i + 1));
    expect(fs.existsSync(path.join(out, "adapter", "adapter_model.safetensors"))).toBe(true);
    expect(fs.existsSync(path.join(tmp, ".locked.rarl-lock"))).toBe(false);
  });

  it("metrics.jsonl with a torn last line: readMetrics warns and goes on; a later writer starts on a line of its own", () => {
    const dir = path.join(tmp, "torn");
    const w = new MetricsWriter(dir);
    w.write({ step: 1, loss: 0.5 });
    w.write({ step: 2, loss: 0.4 });
    w.close();
    const f = path.join(dir, "metrics.jsonl");
    fs.appendFileSync(f, '{"step": 3, "lo');
    const { value: steps, lines: logs } = captureLogs(() => {
      const read = readMetrics(dir).map((m) => m.step);
      const w2 = new MetricsWriter(dir);
      w2.write({ step: 3, loss: 0.3 });
      w2.close();
      return read;
    });
    expect(steps).toEqual([1, 2]);
    expect(logs.join("\n")).toMatch(/metrics\.jsonl:3: ignoring a torn last line/);
    expect(readMetrics(dir).map((m) => m.step)).toEqual([1, 2, 3]);
  });
});
