import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JudgeInputError } from "./errors";
import { readPredictions, validatePredictions } from "./io";

const ok = (id: string | number) => ({ id, dataset: "d", question: "q", reference: "r", prediction: "p" });
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-judge-io-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("predictions input checking lists every problem", () => {
  it("reports bad JSON, non-objects, missing and mistyped fields and duplicate ids, each with its line, in one error", () => {
    const f = path.join(dir, "bad.jsonl");
    const lines = [
      JSON.stringify(ok("a")), // 1 fine
      "{oops", // 2 bad JSON
      JSON.stringify({ ...ok("b"), question: 5 }), // 3 mistyped
      "[1,2]", // 4 not an object
      JSON.stringify({ id: "c", dataset: "d" }), // 5 three missing fields
      JSON.stringify(ok("a")), // 6 duplicate of line 1
      JSON.stringify({ ...ok("e"), prediction_reasoning: 3 }), // 7 optional field mistyped
      JSON.stringify(ok("f")), // 8 fine
    ];
    fs.writeFileSync(f, `${lines.join("\n")}\n`);
    let err: unknown;
    try {
      readPredictions(f);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(JudgeInputError);
    const e = err as JudgeInputError;
    expect(e.message).toContain(`${f}: 8 problems:`);
    for (const want of [
      `${f}:2: not valid JSON`,
      `${f}:3: field "question" must be a string, got number`,
      `${f}:4: expected a JSON object`,
      `${f}:5: missing field "question"`,
      `${f}:5: missing field "reference"`,
      `${f}:5: missing field "prediction"`,
      `${f}:6: duplicate id "a" (first seen on line 1)`,
      `${f}:7: field "prediction_reasoning" must be a string when present`,
    ]) {
      expect(e.message).toContain(want);
    }
    expect(e.code).toBe("JUDGE_BAD_JSON"); // the first problem's
    expect((e.details.problems as Array<{ line: number }>).map((p) => p.line)).toEqual([2, 3, 4, 5, 5, 5, 6, 7]);
  });

  it("a single problem keeps the one-line message; valid input still parses", () => {
    expect(() => validatePredictions("p.jsonl", [{ value: ok("x"), line: 1 }, { value: ok("x"), line: 2 }])).toThrow(/^p\.jsonl:2: duplicate id "x" \(first seen on line 1\)$/);
    expect(validatePredictions("p.jsonl", [{ value: ok(1), line: 1 }])).toEqual([{ ...ok("1") }]);
  });
});
