import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type FaultServer, startFaultServer } from "../../../judge/src/testing/fault-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../program";

const KEY = "sk-cli-SECRET-c0ffee-91";
const cliDir = fileURLToPath(new URL("../..", import.meta.url));
let srv: FaultServer;
let dir: string;
const userKey = process.env.OPENAI_API_KEY;

beforeAll(async () => {
  srv = await startFaultServer({ defaultRetryAfter: "0" });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-cli-judge-"));
});
afterAll(async () => {
  if (userKey === undefined) delete process.env.OPENAI_API_KEY;
  else process.env.OPENAI_API_KEY = userKey;
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function writePreds(file: string, faults: string[], tag: string) {
  const lines = faults.map((f, i) =>
    JSON.stringify({ id: `${tag}-${i}`, dataset: i % 3 ? "VQA-RAD" : "Ours", question: `${tag} q${i} #fault=${f}`, reference: "yes", prediction: i % 4 ? "yes" : "no" }),
  );
  fs.writeFileSync(file, `${lines.join("\n")}\n`);
}

function lines(file: string): any[] {
  return fs.existsSync(file)
    ? fs
        .readFileSync(file, "utf8")
        .split("\n")
        .filter((l) => l.trim())
        .flatMap((l) => {
          try {
            return [JSON.parse(l)];
          } catch {
            return [];
          }
        })
    : [];
}

/** Spawns the real CLI (`node --import tsx src/bin.ts judge ...`) with the secret key in its environment. */
function spawnCli(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, ["--import", "tsx", "src/bin.ts", ...args], {
    cwd: cliDir,
    env: { ...process.env, OPENAI_API_KEY: KEY },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => child.on("close", (code) => r({ code, stdout, stderr })));
  return { child, done };
}

describe("rarl judge (spawned CLI)", () => {
  it("SIGKILL mid-run, then a restart sends requests only for the remainder; no key in any output", async () => {
    const n = 40;
    const preds = path.join(dir, "kill.jsonl");
    writePreds(preds, Array.from({ length: n }, () => "slow@60"), "kill");
    const out = path.join(dir, "kill-results.jsonl");
    const cache = path.join(dir, "kill-cache");
    const args = ["judge", "--predictions", preds, "--judge", "openai:gpt-4o-mini", "--base-url", `${srv.url}/v1`, "--concurrency", "2", "--timeout-ms", "2000", "--cache", cache, "--out", out];
    const start = srv.requests;
    const first = spawnCli(args);
    // wait until the server has seen some requests, then kill hard
    while (srv.requests - start < 12) await new Promise((r) => setTimeout(r, 10));
    first.child.kill("SIGKILL");
    const r1 = await first.done;
    expect(r1.code).toBeNull();
    const firstRequests = srv.requests - start;
    const cachedAfterKill = lines(path.join(cache, "openai_gpt-4o-mini.jsonl")).length;
    expect(cachedAfterKill).toBeGreaterThan(0);
    expect(cachedAfterKill).toBeLessThan(n);
    expect(lines(out).length).toBe(cachedAfterKill); // results were appended as they arrived

    const before = srv.requests;
    const second = spawnCli(args);
    const r2 = await second.done;
    expect(r2.code).toBe(0);
    const secondRequests = srv.requests - before;
    expect(secondRequests).toBe(n - cachedAfterKill); // only the remainder
    expect(firstRequests + secondRequests).toBeLessThanOrEqual(n + 2); // at most the in-flight pair repeated
    const rows = lines(out);
    expect(rows.length).toBe(n);
    expect(new Set(rows.map((r) => r.id)).size).toBe(n);
    expect(rows.every((r) => r.status === "scored")).toBe(true);
    expect(r2.stderr).toContain(`${n} samples, ${n} scored, 0 failed, 0 lost`);

    // a third run (in-process) costs nothing
    const before3 = srv.requests;
    process.env.OPENAI_API_KEY = KEY;
    try {
      expect(await runCli([...args, "--quiet"])).toBe(0);
    } finally {
      delete process.env.OPENAI_API_KEY;
    }
    expect(srv.requests).toBe(before3);
    expect(lines(out).every((r) => r.cached === true)).toBe(true);

    // failures with error messages (in-process, stdout/stderr captured), still no key anywhere
    const preds2 = path.join(dir, "fail.jsonl");
    writePreds(preds2, ["401", "500,500", "malformed,malformed", "hang,hang", "ok"], "fail");
    const out2 = path.join(dir, "fail-results.jsonl");
    const r4 = { code: -1, stdout: "", stderr: "" };
    const origOut = process.stdout.write.bind(process.stdout);
    const origErr = process.stderr.write.bind(process.stderr);
    (process.stdout as any).write = (x: string) => {
      r4.stdout += String(x);
      return true;
    };
    (process.stderr as any).write = (x: string) => {
      r4.stderr += String(x);
      return true;
    };
    process.env.OPENAI_API_KEY = KEY;
    try {
      r4.code = await runCli([
        "judge", "--predictions", preds2, "--judge", "openai:gpt-4o-mini", "--base-url", `${srv.url}/v1`,
        "--timeout-ms", "700", "--max-attempts", "2", "--retry-base-ms", "1", "--cache", cache, "--out", out2,
      ]);
    } finally {
      (process.stdout as any).write = origOut;
      (process.stderr as any).write = origErr;
      delete process.env.OPENAI_API_KEY;
    }
    expect(r4.code).toBe(2); // some samples failed: non-zero exit, count printed
    expect(r4.stderr).toContain("4 of 5 samples ended without a score (4 failed, 0 lost)");
    const rows2 = lines(out2);
    expect(rows2.map((r) => r.status).sort()).toEqual(["failed", "failed", "failed", "failed", "scored"]);
    expect(rows2.filter((r) => r.status === "failed").every((r) => typeof r.error === "string" && r.error.length > 0)).toBe(true);
    const everything = [
      r1.stdout, r1.stderr, r2.stdout, r2.stderr, r4.stdout, r4.stderr,
      ...[out, out2, ...fs.readdirSync(cache).map((f) => path.join(cache, f))].map((f) => fs.readFileSync(f, "utf8")),
    ].join("\n");
    expect(r4.stderr).toMatch(/client_error: HTTP 401/);
    expect(everything).not.toContain(KEY);
  });

  it("rejects bad input before sending any request", async () => {
    const before = srv.requests;
    const preds = path.join(dir, "dup.jsonl");
    fs.writeFileSync(preds, `${JSON.stringify({ id: "a", dataset: "d", question: "q", reference: "r", prediction: "p" })}\n${JSON.stringify({ id: "a", dataset: "d", question: "q", reference: "r", prediction: "p" })}\n`);
    const errs: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    (process.stderr as any).write = (s: string) => {
      errs.push(String(s));
      return true;
    };
    process.env.OPENAI_API_KEY = KEY;
    try {
      expect(await runCli(["judge", "--predictions", preds, "--judge", "openai:gpt-4o-mini", "--base-url", `${srv.url}/v1`, "--out", path.join(dir, "dup-out.jsonl")])).toBe(1);
    } finally {
      (process.stderr as any).write = orig;
      delete process.env.OPENAI_API_KEY;
    }
    expect(errs.join("")).toContain('dup.jsonl:2: duplicate id "a" (first seen on line 1)');
    expect(srv.requests).toBe(before);
  });
});

describe("rarl judge + rarl report (in-process)", () => {
  it("offline judge, unknown judge, missing key, then a Table-3-style report of two judges", async () => {
    const preds = path.join(dir, "p.jsonl");
    fs.writeFileSync(
      preds,
      [
        { id: 1, dataset: "Ours", question: "q1", reference: "pneumonia", prediction: "pneumonia", reference_reasoning: "opacity right lung", prediction_reasoning: "opacity right lung" },
        { id: 2, dataset: "Ours", question: "q2", reference: "pneumonia", prediction: "fracture", reference_reasoning: "opacity right lung", prediction_reasoning: "bone" },
        { id: 3, dataset: "SLAKE", question: "q3", reference: "Yes", prediction: "yes, normal" },
        { id: 4, dataset: "SLAKE", question: "q4", reference: "No", prediction: "Yes" },
      ]
        .map((x) => JSON.stringify(x))
        .join("\n"),
    );
    const offOut = path.join(dir, "offline.jsonl");
    expect(await runCli(["judge", "--predictions", preds, "--judge", "offline", "--out", offOut, "--quiet"])).toBe(0);
    expect(lines(offOut).map((r) => [r.id, r.prediction_score, r.reasoning_score]).sort()).toEqual([
      ["1", 1, 1],
      ["2", 0, 0],
      ["3", 1, null],
      ["4", 0, null],
    ]);
    const errs: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    (process.stderr as any).write = (s: string) => {
      errs.push(String(s));
      return true;
    };
    const savedKey = process.env.OPENAI_API_KEY;
    delete process.env.OPENAI_API_KEY;
    try {
      expect(await runCli(["judge", "--predictions", preds, "--judge", "mistral:x", "--out", path.join(dir, "u.jsonl")])).toBe(1);
      expect(await runCli(["judge", "--predictions", preds, "--judge", "openai:gpt-4o-mini", "--out", path.join(dir, "u.jsonl")])).toBe(1);
    } finally {
      (process.stderr as any).write = orig;
      if (savedKey !== undefined) process.env.OPENAI_API_KEY = savedKey;
    }
    expect(errs.join("")).toContain('unknown judge "mistral:x"');
    expect(errs.join("")).toContain("set OPENAI_API_KEY");

    const gptOut = path.join(dir, "gpt.jsonl");
    process.env.RARL_TEST_KEY = KEY;
    expect(
      await runCli(["judge", "--predictions", preds, "--judge", "openai:gpt-4o-mini", "--api-key-env", "RARL_TEST_KEY", "--base-url", `${srv.url}/v1`, "--no-cache", "--out", gptOut, "--quiet", "--summary", path.join(dir, "gpt-summary.json")]),
    ).toBe(0);
    const summary = JSON.parse(fs.readFileSync(path.join(dir, "gpt-summary.json"), "utf8"));
    expect(summary).toMatchObject({ total: 4, scored: 4, failed: 0, lost: 0, stats: { requests: 4, cacheHits: 0 } });
    expect(summary.stats.inputTokens).toBeGreaterThan(0);
    // list price of gpt-4o-mini: $0.15 / $0.60 per 1M tokens
    expect(summary.stats.costUsd).toBeCloseTo((summary.stats.inputTokens * 0.15 + summary.stats.outputTokens * 0.6) / 1e6, 12);
    // price override for the judge's model
    expect(
      await runCli(["judge", "--predictions", preds, "--judge", "openai:gpt-4o-mini", "--api-key-env", "RARL_TEST_KEY", "--base-url", `${srv.url}/v1`, "--no-cache", "--out", path.join(dir, "gpt2.jsonl"), "--quiet", "--price-input", "1", "--price-output", "2", "--summary", path.join(dir, "gpt2-summary.json")]),
    ).toBe(0);
    const s2 = JSON.parse(fs.readFileSync(path.join(dir, "gpt2-summary.json"), "utf8")).stats;
    expect(s2.costUsd).toBeCloseTo((s2.inputTokens * 1 + s2.outputTokens * 2) / 1e6, 12);
    delete process.env.RARL_TEST_KEY;

    const human = path.join(dir, "human.jsonl");
    fs.writeFileSync(human, `${JSON.stringify({ id: 1, reasoning_score: 1, prediction_score: 1 })}\n${JSON.stringify({ id: 2, reasoning_score: 1, prediction_score: 0 })}\n`);
    const outs: string[] = [];
    const origOut = process.stdout.write.bind(process.stdout);
    (process.stdout as any).write = (s: string) => {
      outs.push(String(s));
      return true;
    };
    try {
      expect(await runCli(["report", gptOut, offOut, "--human", human])).toBe(0);
      expect(await runCli(["report", gptOut, "--json"])).toBe(0);
    } finally {
      (process.stdout as any).write = origOut;
    }
    const md = outs[0];
    expect(md.split("\n")[0]).toBe(
      "| Dataset | GPT-4o mini Reasoning (%) | GPT-4o mini Final (%) | offline (not an LLM judge) Reasoning (%) | offline (not an LLM judge) Final (%) | Human Evaluation Reasoning (%) | Human Evaluation Final (%) |",
    );
    // server judge: exact match -> ids 1 and 3? no: "yes, normal" != "yes" for the server, so SLAKE final 0%
    expect(md).toContain("| Ours | 50.00% | 50.00% | 50.00% | 50.00% | 100.00% | 50.00% |");
    expect(md).toContain("| SLAKE | _ | 0.00% | _ | 50.00% | _ | _ |");
    const json = JSON.parse(outs[1]);
    expect(json.cells.map((c: any) => [c.dataset, c.finalPct])).toEqual([
      ["Ours", 50],
      ["SLAKE", 0],
    ]);
  });
});
