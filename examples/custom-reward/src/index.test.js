import { describe, expect, it } from "vitest";
import reward, { answerBrevity, answerText, MAX_WORDS } from "./index.js";

describe("@acme/rarl-reward-x", () => {
  it("exports a reward definition", () => {
    expect(reward.name).toBe("answer-brevity");
    expect(typeof reward.fn).toBe("function");
  });
  it("extracts the answer", () => {
    expect(answerText("<think>x</think><answer> left kidney </answer>")).toBe("left kidney");
    expect(answerText("plain")).toBe("plain");
  });
  it("rewards short committed answers", () => {
    expect(answerBrevity("<answer>Yes</answer>")).toBe(1);
    expect(answerBrevity("<answer>maybe yes</answer>")).toBe(0);
    expect(answerBrevity("<answer></answer>")).toBe(0);
    const long = `<answer>${"word ".repeat(2 * MAX_WORDS)}</answer>`;
    expect(answerBrevity(long)).toBe(0.5);
  });
  it("is total on odd inputs", () => {
    for (const s of ["", "<answer>", "</answer><answer>", "\u{1F600}".repeat(1000), "a".repeat(1 << 20)]) {
      const v = answerBrevity(s);
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(1);
    }
  });
});
