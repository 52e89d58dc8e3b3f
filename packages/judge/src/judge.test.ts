import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JudgeConfigError, JudgeInputError } from "./errors";
import { Judge } from "./judge";
import { runJudge } from "./run";
import { type FaultServer, startFaultServer } from "./testing/fault-server";
import type { PredictionRecord, ResultRecord } from "./types";

const KEY = "sk-test-DO-NOT-LEAK-4f8a9c";
const GKEY = "gm-test-DO-NOT-LEAK-77b1";
let srv: FaultServer;
let dir: string;
let seq = 0;

beforeAll(async () => {
  srv = await startFaultServer({ defaultRetryAfter: "0" });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-judge-"));
});
afterAll(async () => {
  await srv.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Unique questions per test so the server's per-question fault scripts start fresh. */
function sample(fault: string, opts: Partial<PredictionRecord> = {}): PredictionRecord {
  seq++;
  return { id: `s${seq}`, dataset: "VQA-RAD", question: `q${seq} #fault=${fault}`, reference: "yes", prediction: "Yes", ...opts };
}

const providers = [
  { judge: "openai:gpt-4o-mini", base: () => `${srv.url}/v1`, env: { OPENAI_API_KEY: KEY } },
  { judge: "gemini:gemini-1.5-flash", base: () => srv.url, env: { GEMINI_API_KEY: GKEY } },
];

function readOut(file: string): ResultRecord[] {
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

describe.each(providers)("judge against the fault-injecting server: $judge", (p) => {
  const base = (extra: object = {}) => ({ judge: p.judge, baseURL: p.base(), env: p.env, timeoutMs: 1000, retry: { baseDelayMs: 2, maxAttempts: 4 }, concurrency: 4, ...extra });

  it("ends every sample scored or failed with a reason, through each fault", async () => {
    const cases: Array<[string, "scored" | "failed", string | undefined, number]> = [
      ["ok", "scored", undefined, 1],
      ["fenced", "scored", undefined, 1],
      ["prose", "scored", undefined, 1],
      ["429,429,ok", "scored", undefined, 3],
      ["500,503,ok", "scored", undefined, 3],
      ["hang,ok", "scored", undefined, 2],
      ["malformed,ok", "scored", undefined, 2],
      ["range,ok", "scored", undefined, 2],
      // an unusable repair reply is one failed attempt: a fresh request follows (before issue 16: failed after 2)
      ["malformed,range,ok", "scored", undefined, 3],
      ["malformed,malformed,malformed,fenced", "scored", undefined, 4],
      ["500,malformed,hang,ok", "scored", undefined, 4],
      ["malformed,range,malformed,range", "failed", "invalid_output", 4],
      ["500,500,500,500", "failed", "server_error", 4],
      ["429,429,429,429", "failed", "rate_limit", 4],
      ["hang,hang,hang,hang", "failed", "timeout", 4],
      ["401", "failed", "client_error", 1],
    ];
    const preds = cases.map(([f], i) => sample(f, i % 2 ? { prediction: "no" } : {}));
    const out = path.join(dir, `faults-${p.judge.replace(":", "_")}.jsonl`);
    const sum = await runJudge({ ...base(), predictions: preds, out });
    const rows = readOut(out);
    expect(rows.length).toBe(cases.length);
    expect(sum.lost).toBe(0);
    cases.forEach(([fault, status, kind, requests], i) => {
      const row = rows.find((r) => r.id === preds[i].id)!;
      expect({ fault, status: row.status }).toEqual({ fault, status });
      if (status === "scored") {
        expect(row.prediction_score).toBe(i % 2 ? 0 : 1);
        expect(row.reasoning_score).toBeNull(); // no reference reasoning: prediction only
      } else {
        expect(row.error?.startsWith(`${kind}:`)).toBe(true);
        expect(row.prediction_score).toBeNull();
      }
      expect({ fault, requests: srv.byKey.get(preds[i].question) }).toEqual({ fault, requests });
    });
    expect(sum.failures).toEqual({ invalid_output: 1, server_error: 1, rate_limit: 1, timeout: 1, client_error: 1 });
    // repairs follow each unusable fresh reply: 1 + 1 + 1 + 2 (fresh, repair, fresh) + 1 + 2
    expect(sum.stats.repairs).toBe(8);
    expect(sum.stats.requests).toBe(cases.reduce((a, c) => a + c[3], 0));
    expect(sum.stats.inputTokens).toBeGreaterThan(0);
    expect(sum.stats.costUsd).toBeGreaterThan(0);
    // repairs carry the previous reply and the repair instruction
    const repairs = srv.log.filter((l) => l.repair && preds.some((q) => q.question === l.key));
    expect(repairs.length).toBe(8);
    // every retry waits; the attempt after a failed repair is a fresh request (no assistant message)
    const seq = srv.log.filter((l) => l.key === preds[cases.findIndex((c) => c[0] === "malformed,malformed,malformed,fenced")].question).map((l) => l.repair);
    expect(seq).toEqual([false, true, false, true]);
    // temperature 0 by default, API key sent in a header, never written anywhere
    expect(srv.log.filter((l) => preds.some((q) => q.question === l.key)).every((l) => l.temperature === 0 && l.hadKey)).toBe(true);
    const text = fs.readFileSync(out, "utf8") + JSON.stringify(sum);
    expect(text).not.toContain(KEY);
    expect(text).not.toContain(GKEY);
  });

  it("connection refused: retried, then failed as network with a reason", async () => {
    const dead = await startFaultServer();
    const url = p.judge.startsWith("openai") ? `${dead.url}/v1` : dead.url;
    await dead.close();
    const sum = await runJudge({ ...base({ baseURL: url, retry: { baseDelayMs: 1, maxAttempts: 2 } }), predictions: [sample("ok")], out: path.join(dir, "dead.jsonl") });
    expect(sum.failedItems[0].error).toMatch(/^network: .*\(gave up after 2 attempts\)$/);
    expect(sum.stats.retries).toEqual({ network: 1 });
    expect(sum.failedItems[0].error).not.toContain(KEY);
  });

  it("honours Retry-After on 429", async () => {
    const s = sample("429@0.3,ok");
    await runJudge({ ...base(), predictions: [s], out: path.join(dir, "ra.jsonl") });
    const times = srv.log.filter((l) => l.key === s.question).map((l) => l.at);
    expect(times.length).toBe(2);
    expect(times[1] - times[0]).toBeGreaterThanOrEqual(290);
  });

  it("scores reasoning when the sample has reference reasoning", async () => {
    const a = sample("ok", { reference_reasoning: "Opacity in the right lung.", prediction_reasoning: "opacity in the right lung" });
    const b = sample("ok", { reference_reasoning: "Opacity in the right lung.", prediction_reasoning: "the heart is big" });
    const out = path.join(dir, "reason.jsonl");
    await runJudge({ ...base(), predictions: [a, b], out });
    const rows = readOut(out);
    expect(rows.find((r) => r.id === a.id)?.reasoning_score).toBe(1);
    expect(rows.find((r) => r.id === b.id)?.reasoning_score).toBe(0);
  });

  it("caches verdicts only: a re-run sends no request for them, and asks again for every failure", async () => {
    const cacheDir = path.join(dir, `cache-${p.judge.replace(":", "_")}`);
    const preds = [sample("ok"), sample("500,ok"), sample("malformed,range,malformed,range"), sample("503,503,503,503")];
    const out = path.join(dir, "c1.jsonl");
    const first = await runJudge({ ...base(), predictions: preds, out, cacheDir });
    expect(first.stats.requests).toBe(1 + 2 + 4 + 4);
    expect(first.failures).toEqual({ invalid_output: 1, server_error: 1 });
    const before = srv.requests;
    const second = await runJudge({ ...base(), predictions: preds.slice(0, 2), out, cacheDir });
    expect(srv.requests).toBe(before); // verdicts are final
    expect(second.stats.cacheHits).toBe(2);
    expect(readOut(out).map((r) => r.cached)).toEqual([true, true]);
    // neither failure (unusable replies, 5xx after all attempts) was cached: both are asked again and now score
    const third = await runJudge({ ...base(), predictions: preds, out, cacheDir });
    expect(srv.requests).toBe(before + 2);
    expect(third.scored).toBe(4);
    // a failed entry in a cache written by an earlier version is not final either
    const cacheFile = fs.readdirSync(cacheDir).map((f) => path.join(cacheDir, f))[0];
    const s = sample("ok");
    const { cacheKey } = await import("./cache");
    fs.appendFileSync(cacheFile, `${JSON.stringify({ key: cacheKey(p.judge, "rarl-appendix-b/v1", s), status: "failed", error: "invalid_output: old" })}\n`);
    const fourth = await runJudge({ ...base(), predictions: [s], out, cacheDir });
    expect(fourth.scored).toBe(1);
    expect(srv.requests).toBe(before + 3);
    // a different prompt version misses the cache
    await runJudge({ ...base(), predictions: preds.slice(0, 1), out, cacheDir, prompt: { template: "Question: {{question}}\n{{prediction}}", version: "custom/1" } });
    expect(srv.requests).toBe(before + 4);
  });
});

describe("bad input is rejected before any request", () => {
  it("missing field, duplicate id, unknown judge, missing key", async () => {
    const before = srv.requests;
    const f = path.join(dir, "bad.jsonl");
    const ok = { id: 1, dataset: "d", question: "q", reference: "r", prediction: "p" };
    fs.writeFileSync(f, `${JSON.stringify(ok)}\n${JSON.stringify({ ...ok, id: 2, prediction: undefined })}\n`);
    const go = (extra: object) => runJudge({ judge: "openai:gpt-4o-mini", baseURL: `${srv.url}/v1`, env: { OPENAI_API_KEY: KEY }, predictions: f, out: path.join(dir, "x.jsonl"), ...extra });
    await expect(go({})).rejects.toThrow(/bad\.jsonl:2: missing field "prediction"/);
    fs.writeFileSync(f, `${JSON.stringify(ok)}\n\n${JSON.stringify({ ...ok, prediction: "z" })}\n`);
    await expect(go({})).rejects.toThrow(/bad\.jsonl:3: duplicate id "1" \(first seen on line 1\)/);
    await expect(go({})).rejects.toBeInstanceOf(JudgeInputError);
    fs.writeFileSync(f, `${JSON.stringify(ok)}\n`);
    await expect(go({ judge: "claude:x" })).rejects.toThrow(/unknown judge "claude:x"/);
    await expect(go({ env: {} })).rejects.toThrow(/set OPENAI_API_KEY/);
    await expect(go({ judge: "gemini:gemini-1.5-flash", env: {} })).rejects.toThrow(/GEMINI_API_KEY or GOOGLE_API_KEY/);
    await expect(go({ env: { MY_KEY: KEY }, apiKeyEnv: "MY_KEY", judge: "nope" })).rejects.toBeInstanceOf(JudgeConfigError);
    expect(srv.requests).toBe(before);
  });
  it("a key from a named env var works", async () => {
    const j = Judge.create({ judge: "openai:m", env: { MY_KEY: KEY }, apiKeyEnv: "MY_KEY", baseURL: `${srv.url}/v1` });
    const o = await j.judge(sample("ok"));
    expect(o.status).toBe("scored");
  });
});

describe("concurrency", () => {
  it("never has more than `concurrency` requests in flight", async () => {
    const own = await startFaultServer();
    try {
      const preds = Array.from({ length: 12 }, () => sample("slow@80"));
      const j = Judge.create({ judge: "openai:gpt-4o-mini", baseURL: `${own.url}/v1`, env: { OPENAI_API_KEY: KEY }, concurrency: 3, timeoutMs: 2000, retry: { baseDelayMs: 1 } });
      const outs = await Promise.all(preds.map((s) => j.judge(s)));
      expect(outs.every((o) => o.status === "scored")).toBe(true);
      expect(own.requests).toBe(12);
      expect(own.maxInFlight).toBe(3);
    } finally {
      await own.close();
    }
  });
});
