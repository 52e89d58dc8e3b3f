import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FaultServer, startFaultServer } from "../../../judge/src/testing/fault-server";

// Issue 16 item 3, acceptance: `rarl judge` (the real CLI, spawned) against a local OpenAI-compatible server that
// injects 429s, 500s, non-JSON replies, fenced JSON and slow replies scores 120 of 120; a re-run sends no request;
// a run killed with SIGKILL and started again redoes only what was unfinished, and its results parse line by line.

const KEY = "sk-faults-c3d2";
const cliDir = fileURLToPath(new URL("../..", import.meta.url));
let srv: FaultServer;
let dir: string;

beforeAll(async () => {
  srv = await startFaultServer({ defaultRetryAfter: "0" });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-judge-faults-"));
});
afterAll(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Every script ends scored within the default 6 attempts; before issue 16, two unusable replies in a row failed the sample. */
const SCRIPTS = [
  "ok",
  "fenced",
  "prose",
  "429,ok",
  "429,429,500,ok",
  "500,503,ok",
  "malformed,ok",
  "malformed,malformed,ok",
  "malformed,range,malformed,fenced",
  "500,malformed,429,malformed,ok",
  "slow@300",
  "range,500,ok",
];

function writePreds(file: string, tag: string, n: number): Array<{ id: string; question: string; prediction: string }> {
  const rows = Array.from({ length: n }, (_, i) => ({
    id: `${tag}-${i}`,
    dataset: i % 2 ? "VQA-RAD" : "SLAKE",
    question: `${tag} q${i} #fault=${SCRIPTS[i % SCRIPTS.length]}`,
    reference: "yes",
    prediction: i % 3 ? "yes" : "no",
  }));
  fs.writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
  return rows;
}

/** Every line of a JSONL file parsed (throws on a line that is not whole JSON). */
function parseEveryLine(file: string): any[] {
  const text = fs.readFileSync(file, "utf8");
  if (text === "") return [];
  expect(text.endsWith("\n")).toBe(true);
  return text
    .slice(0, -1)
    .split("\n")
    .map((l) => JSON.parse(l));
}

function spawnJudge(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, ["--import", "tsx", "src/bin.ts", "judge", ...args], {
    cwd: cliDir,
    env: { ...process.env, OPENAI_API_KEY: KEY, RARL_LOG_LEVEL: "warn" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  return { child, done: new Promise((r) => child.on("close", (code) => r({ code, stderr }))) };
}

const judgeArgs = (preds: string, out: string, cache: string, concurrency = 4) => [
  "--predictions", preds, "--judge", "openai:gpt-4o-mini", "--base-url", `${srv.url}/v1`,
  "--concurrency", String(concurrency), "--timeout-ms", "3000", "--retry-base-ms", "5", "--cache", cache, "--out", out, "--quiet",
];

function checkScores(rows: any[], preds: Array<{ id: string; prediction: string }>) {
  expect(rows).toHaveLength(preds.length);
  expect(new Set(rows.map((r) => r.id)).size).toBe(preds.length);
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const p of preds) {
    const r = byId.get(p.id);
    expect({ id: p.id, status: r.status, score: r.prediction_score }).toEqual({ id: p.id, status: "scored", score: p.prediction === "yes" ? 1 : 0 });
  }
}

describe("rarl judge against a fault-injecting OpenAI-compatible server (issue 16 item 3)", () => {
  it("scores 120 of 120 through 429s, 500s, non-JSON, fenced and slow replies; a re-run sends no request", async () => {
    const preds = path.join(dir, "a.jsonl");
    const rows = writePreds(preds, "a", 120);
    const out = path.join(dir, "a-results.jsonl");
    const args = judgeArgs(preds, out, path.join(dir, "a-cache"));
    const start = srv.requests;
    const r1 = await spawnJudge(args).done;
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stderr).toContain("120 samples, 120 scored, 0 failed, 0 lost");
    checkScores(parseEveryLine(out), rows);
    // requests as the scripts dictate: one per fault, plus the final good reply
    const want = rows.reduce((n, r) => n + r.question.split("#fault=")[1].split(",").length, 0);
    expect(srv.requests - start).toBe(want);

    const before = srv.requests;
    const r2 = await spawnJudge(args).done;
    expect(r2.code, r2.stderr).toBe(0);
    expect(srv.requests).toBe(before);
    expect(r2.stderr).toContain("120 samples, 120 scored, 0 failed, 0 lost");
    expect(r2.stderr).toContain("cache hits 120");
    const again = parseEveryLine(out);
    checkScores(again, rows);
    expect(again.every((r) => r.cached === true)).toBe(true);
  });

  it("SIGKILL mid-run, then a restart redoes only the unfinished samples; the results file parses line by line", async () => {
    const preds = path.join(dir, "b.jsonl");
    const rows = writePreds(preds, "b", 120);
    const out = path.join(dir, "b-results.jsonl");
    const cache = path.join(dir, "b-cache");
    const args = judgeArgs(preds, out, cache);
    const start = srv.requests;
    const first = spawnJudge(args);
    const killAfter = 20 + Math.floor(Math.random() * 100); // a random point of the run (300 requests in all)
    while (srv.requests - start < killAfter) await new Promise((r) => setTimeout(r, 1));
    first.child.kill("SIGKILL");
    expect((await first.done).code).toBeNull();
    const cacheFile = path.join(cache, "openai_gpt-4o-mini.jsonl");
    const cached = new Set<string>();
    for (const l of fs.readFileSync(cacheFile, "utf8").split("\n").filter(Boolean)) cached.add(JSON.parse(l).key);
    const partial = parseEveryLine(out);
    expect(partial.length).toBe(cached.size);
    expect(partial.length, `killed after ${killAfter} requests`).toBeLessThan(120);
    const seen = new Map(rows.map((r) => [r.question, srv.byKey.get(r.question) ?? 0]));

    const r2 = await spawnJudge(args).done;
    expect(r2.code, r2.stderr).toBe(0);
    expect(r2.stderr).toContain("120 samples, 120 scored, 0 failed, 0 lost");
    expect(r2.stderr).toContain(`cache hits ${partial.length}`);
    // the killed run's lock on the results file is taken over, with a warning naming it
    expect(r2.stderr).toMatch(new RegExp(`taking over the lock of .*b-results\\.jsonl: its holder PID ${first.child.pid} .*is no longer running`));
    const finished = new Set(partial.map((r) => r.id));
    for (const r of rows) {
      // a sample finished before the kill costs no request; an unfinished one goes on with its script
      if (finished.has(r.id)) expect({ id: r.id, requests: srv.byKey.get(r.question) }).toEqual({ id: r.id, requests: seen.get(r.question) });
    }
    checkScores(parseEveryLine(out), rows);
  });

  it("two concurrent runs on one --out: the second is refused naming the first's PID, the first's results are intact (item 4)", async () => {
    const preds = path.join(dir, "c.jsonl");
    // 6 replies of 1.5 s one after the other: the first run holds its output ~9 s, the second starts in ~3 s
    const rows = Array.from({ length: 6 }, (_, i) => ({ id: `c-${i}`, dataset: "SLAKE", question: `c q${i} #fault=slow@1500`, reference: "yes", prediction: i % 2 ? "yes" : "no" }));
    fs.writeFileSync(preds, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);
    const out = path.join(dir, "c-results.jsonl");
    const start = srv.requests;
    const first = spawnJudge(judgeArgs(preds, out, path.join(dir, "c-cache"), 1));
    while (srv.requests - start < 1) await new Promise((r) => setTimeout(r, 5));
    const second = await spawnJudge(judgeArgs(preds, out, path.join(dir, "c-cache2"))).done;
    expect(first.child.exitCode, "the first run ended before the second started: no overlap to test").toBeNull();
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`${out} is being written by another process (PID ${first.child.pid}`);
    const r1 = await first.done;
    expect(r1.code, r1.stderr).toBe(0);
    expect(r1.stderr).toContain("6 samples, 6 scored, 0 failed, 0 lost");
    checkScores(parseEveryLine(out), rows);
    expect(fs.existsSync(path.join(dir, ".c-results.jsonl.rarl-lock"))).toBe(false);
  });
});
