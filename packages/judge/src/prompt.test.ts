import { describe, expect, it } from "vitest";
import { APPENDIX_B_PROMPT_VERSION, DEFAULT_PROMPT, PREDICTION_ONLY_NOTE, renderPrompt } from "./prompt";

const s = { id: "1", dataset: "Ours", question: "What disease?", reference: "Pneumonia", prediction: "pneumonia" };

describe("renderPrompt", () => {
  it("contains the paper's Appendix B instructions and the sample", () => {
    const p = renderPrompt({ ...s, reference_reasoning: "Opacity in right lung.", prediction_reasoning: "Dark area." });
    expect(p).toContain("Evaluate the model prediction for its relevance, accuracy, and alignment with the ground truth.");
    expect(p).toContain("Reasoning Scoring: if the reasoning of the prediction is similar to ground truth, returning 1, otherwise returning 0.");
    expect(p).toContain('"prediction_score": prediction score');
    expect(p).toContain("Question: What disease?");
    expect(p).toContain("Ground truth:\nReasoning: Opacity in right lung.\nFinal answer: Pneumonia");
    expect(p).toContain("Prediction:\nReasoning: Dark area.\nFinal answer: pneumonia");
    expect(p).not.toContain(PREDICTION_ONLY_NOTE);
    expect(p).not.toMatch(/\{\{\w+\}\}/);
  });
  it("asks for a null reasoning score when there is no reference reasoning", () => {
    expect(renderPrompt(s)).toContain(PREDICTION_ONLY_NOTE);
  });
  it("accepts a custom template", () => {
    expect(renderPrompt(s, { template: "Q={{question}} R={{reference}} P={{prediction_answer}}", version: "mine/1" })).toBe("Q=What disease? R=Pneumonia P=pneumonia");
    expect(DEFAULT_PROMPT.version).toBe(APPENDIX_B_PROMPT_VERSION);
  });
});
