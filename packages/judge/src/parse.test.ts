import { describe, expect, it } from "vitest";
import { extractJson, parseVerdict } from "./parse";

describe("extractJson", () => {
  it("reads a bare object, a fenced block and an object inside prose", () => {
    expect(extractJson('{"a": 1}')).toEqual({ a: 1 });
    expect(extractJson('Here:\n```json\n{"a": 2, "b": "x}"}\n```\nbye')).toEqual({ a: 2, b: "x}" });
    expect(extractJson('I rate it {"evaluation": "ok {fine}", "n": 3} overall.')).toEqual({ evaluation: "ok {fine}", n: 3 });
  });
  it("returns undefined when no object is present", () => {
    expect(extractJson("score: 1")).toBeUndefined();
    expect(extractJson("[1, 2]")).toBeUndefined();
  });
});

describe("parseVerdict", () => {
  const good = { evaluation: "matches", reasoning_score: 1, prediction_score: 0 };
  it("accepts a valid verdict", () => {
    expect(parseVerdict(JSON.stringify(good), true)).toEqual({ ok: true, verdict: good });
  });
  it("rejects scores out of range, naming the field", () => {
    const r = parseVerdict(JSON.stringify({ ...good, prediction_score: 2 }), true);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain("/prediction_score");
  });
  it("rejects a missing reasoning_score when reasoning is scored", () => {
    const r = parseVerdict(JSON.stringify({ evaluation: "x", prediction_score: 1 }), true);
    expect(r.ok).toBe(false);
  });
  it("prediction-only samples: reasoning_score may be null or absent and is always null in the verdict", () => {
    const a = parseVerdict(JSON.stringify({ evaluation: "x", prediction_score: 1 }), false);
    const b = parseVerdict(JSON.stringify({ evaluation: "x", reasoning_score: 1, prediction_score: 1 }), false);
    expect(a).toEqual({ ok: true, verdict: { evaluation: "x", reasoning_score: null, prediction_score: 1 } });
    expect(b.ok && b.verdict.reasoning_score).toBe(null);
  });
  it("rejects a non-string evaluation", () => {
    expect(parseVerdict(JSON.stringify({ ...good, evaluation: 5 }), true).ok).toBe(false);
  });
});
