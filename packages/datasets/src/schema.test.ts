import { describe, expect, it } from "vitest";
import { isSample, sampleProblem } from "./schema";

const ok = { id: "a", image: { path: "x.png" }, question: "q?", answer: "yes", answer_type: "closed", source: "t" };

describe("sample schema (ajv)", () => {
  it("accepts path and bytes images, rejects the rest with the field named", () => {
    expect(sampleProblem(ok)).toBeNull();
    expect(isSample({ ...ok, image: { bytes: new Uint8Array([1]) } })).toBe(true);
    expect(sampleProblem({ ...ok, image: { bytes: [1, 2] } })).toMatch(/image/);
    expect(sampleProblem({ ...ok, image: { path: "" } })).toMatch(/image/);
    expect(sampleProblem({ ...ok, question: "" })).toMatch(/question/);
    expect(sampleProblem({ ...ok, answer_type: "yesno" })).toMatch(/answer_type/);
    expect(sampleProblem({ ...ok, bogus: 1 })).toMatch(/bogus/);
    const { id: _, ...noId } = ok;
    expect(sampleProblem(noId)).toMatch(/id/);
  });

  it("choice questions need at least two choices", () => {
    expect(sampleProblem({ ...ok, answer_type: "choice" })).not.toBeNull();
    expect(sampleProblem({ ...ok, answer_type: "choice", choices: ["a"] })).not.toBeNull();
    expect(sampleProblem({ ...ok, answer_type: "choice", choices: ["a", "b"] })).toBeNull();
  });
});
