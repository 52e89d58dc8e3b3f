import { describe, expect, it } from "vitest";
import { headroomMetrics } from "./headroom";

describe("headroomMetrics", () => {
  it("greedy, pass@1, pass@G, maj@G, flippable and all-equal shares", () => {
    const h = headroomMetrics([
      // greedy wrong, 2 of 4 right, majority "yes" (2) vs "no" (2): tie -> the first sampled ("No", wrong)
      { id: "a", greedy: 0, answers: ["No", "yes", "Yes.", "no"], correct: [0, 1, 1, 0] },
      // greedy right, all samples right
      { id: "b", greedy: 1, answers: ["left", "Left", "left", "left"], correct: [1, 1, 1, 1] },
      // greedy wrong, 1 of 4 right: not flippable (needs 2)
      { id: "c", greedy: 0, answers: ["CT", "MRI", "MRI", "X-ray"], correct: [1, 0, 0, 0] },
      // greedy wrong, 3 right: flippable, majority right
      { id: "d", greedy: 0, answers: ["No", "Yes", "Yes", "Yes"], correct: [0, 1, 1, 1] },
    ]);
    expect(h).toEqual({ n: 4, g: 4, greedy: 0.25, pass_at_1: (0.5 + 1 + 0.25 + 0.75) / 4, pass_at_g: 1, maj_at_g: 0.5, flippable: 0.5, all_equal: 0.25 });
  });
  it("rejects empty input and ragged G", () => {
    expect(() => headroomMetrics([])).toThrow(/no questions/);
    expect(() =>
      headroomMetrics([
        { id: "a", greedy: 0, answers: ["x"], correct: [0] },
        { id: "b", greedy: 0, answers: ["x", "y"], correct: [0, 1] },
      ]),
    ).toThrow(/same number G/);
  });
});
