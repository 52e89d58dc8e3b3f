import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { cacheKey, JudgeCache } from "./cache";
import { readPredictions } from "./io";

const s = { id: "1", dataset: "d", question: "q", reference: "r", prediction: "p" };

describe("JudgeCache", () => {
  it("keys on judge, prompt version and judged content (not id or dataset)", () => {
    const k = cacheKey("openai:gpt-4o-mini", "v1", s);
    expect(cacheKey("openai:gpt-4o-mini", "v1", { ...s, id: "9", dataset: "other" })).toBe(k);
    expect(cacheKey("openai:gpt-4o", "v1", s)).not.toBe(k);
    expect(cacheKey("openai:gpt-4o-mini", "v2", s)).not.toBe(k);
    expect(cacheKey("openai:gpt-4o-mini", "v1", { ...s, prediction: "p2" })).not.toBe(k);
    expect(cacheKey("openai:gpt-4o-mini", "v1", { ...s, reference_reasoning: "x" })).not.toBe(k);
  });
  it("survives a torn last line (crash mid-write): earlier entries load, later appends are readable", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-cache-"));
    try {
      const c = new JudgeCache(dir, "openai:m");
      c.put({ key: "a", status: "scored", verdict: { evaluation: "e", reasoning_score: null, prediction_score: 1 } });
      c.close();
      fs.appendFileSync(c.file, '{"key": "b", "status": "sco');
      const c2 = new JudgeCache(dir, "openai:m");
      expect(c2.size).toBe(1);
      c2.put({ key: "c", status: "failed", error: "invalid_output: x" });
      c2.close();
      const c3 = new JudgeCache(dir, "openai:m");
      expect(c3.get("a")?.status).toBe("scored");
      expect(c3.get("b")).toBeUndefined();
      expect(c3.get("c")).toEqual({ key: "c", status: "failed", error: "invalid_output: x" });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("readPredictions", () => {
  it("names the file and line for bad JSON, wrong types and empty files", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-preds-"));
    const f = path.join(dir, "p.jsonl");
    try {
      fs.writeFileSync(f, `${JSON.stringify(s)}\n{oops\n`);
      expect(() => readPredictions(f)).toThrow(/p\.jsonl:2: not valid JSON/);
      fs.writeFileSync(f, `${JSON.stringify({ ...s, question: 5 })}\n`);
      expect(() => readPredictions(f)).toThrow(/p\.jsonl:1: field "question" must be a string, got number/);
      fs.writeFileSync(f, `${JSON.stringify({ ...s, reference_reasoning: ["x"] })}\n`);
      expect(() => readPredictions(f)).toThrow(/p\.jsonl:1: field "reference_reasoning" must be a string when present/);
      fs.writeFileSync(f, "\n\n");
      expect(() => readPredictions(f)).toThrow(/no predictions/);
      fs.writeFileSync(f, `${JSON.stringify({ ...s, id: 7, reference_reasoning: "why" })}\n`);
      expect(readPredictions(f)).toEqual([{ ...s, id: "7", reference_reasoning: "why" }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
