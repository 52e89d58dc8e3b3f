import { describe, expect, it } from "vitest";
import { accuracyReward, reasoningReward } from "./builtins";
import { factAgreement, factsSimilarity, parseFacts, sampleFacts } from "./facts";
import { tokenF1 } from "./lexical";
import { isYesNoReference } from "./normalize";

describe("parseFacts", () => {
  it("reads modality, lesion, patient side and size, ignoring the image half", () => {
    expect(parseFacts("CT. A large bright spot in the image's right half, the patient's left lung. Abnormal.")).toEqual({ modality: "ct", lesion: true, side: "left", size: "large" });
    expect(parseFacts("X-ray. Both sides are clear, no bright spot. No lesion, normal.")).toEqual({ modality: "x-ray", lesion: false });
    expect(parseFacts("small lesion in the right hemisphere")).toEqual({ lesion: true, side: "right", size: "small" });
    expect(parseFacts("no abnormality")).toEqual({ lesion: false });
    expect(parseFacts("left")).toEqual({ side: "left" });
    expect(parseFacts("MRI")).toEqual({ modality: "mri" });
  });
  it("reads the synthetic full reasoning (both kinds)", () => {
    const pos =
      "This is an axial chest CT slice: a grey soft-tissue body outline containing two dark lungs, the heart in front and a bright vertebra at the back. A well-defined, clearly brighter round blob, about 20% of the image width across, lies in the right half of the image, which is the patient's left lung by radiological convention. The other side is clear. This is a large lesion in the left lung, so the image is abnormal.";
    expect(parseFacts(pos)).toEqual({ modality: "ct", lesion: true, side: "left", size: "large" });
    const neg =
      "This is a frontal chest X-ray: two dark lung fields on either side of the bright mediastinum and spine, crossed by faint rib shadows. Both lung fields are uniformly dark with no focal bright opacity. There is no lesion, so the image looks normal.";
    expect(parseFacts(neg)).toEqual({ modality: "x-ray", lesion: false });
  });
  it("marks a text that states both sides as a conflict", () => {
    expect(parseFacts("lesion in the left lung or the right lung").side).toBe("conflict");
    expect(parseFacts("normal, with a lesion").lesion).toBe("conflict");
  });
});

describe("structured-fact agreement", () => {
  it("the side swap is not correct (unigram F1 said 0.8)", async () => {
    const ref = "large lesion in the left lung";
    const pred = "small lesion in the right lung";
    expect(tokenF1(pred, ref)).toBeGreaterThanOrEqual(0.5); // the old, blind metric
    const [s] = await factsSimilarity.score([pred], [ref]);
    expect(s).toBeCloseTo(1 / 3, 10);
    expect((await factsSimilarity.score([ref], [ref]))[0]).toBe(1);
    expect((await factsSimilarity.score(["large lesion in the right lung"], [ref]))[0]).toBeCloseTo(2 / 3, 10);
  });
  it("an omitted or conflicting fact counts as wrong; no reference facts -> null (token F1 in the scorer)", async () => {
    expect(factAgreement({ modality: "ct" }, { modality: "ct", lesion: false })).toBe(0.5);
    expect(factAgreement({ side: "conflict" }, { side: "left" })).toBe(0);
    expect(factAgreement({ side: "left" }, {})).toBeNull();
    expect((await factsSimilarity.score(["pneumonia"], ["pneumonia"]))[0]).toBe(1);
  });
  it("sampleFacts reads the synthetic ground truth; side and size only with a lesion", () => {
    expect(sampleFacts({ modality: "MRI", extra: { lesion: true, side: "right", lesion_size: "small" } })).toEqual({ modality: "mri", lesion: true, side: "right", size: "small" });
    expect(sampleFacts({ modality: "X-ray", extra: { lesion: false, side: "left" } })).toEqual({ modality: "x-ray", lesion: false });
    expect(sampleFacts({})).toEqual({});
  });
});

describe("reasoning reward with structured facts", () => {
  const ctx = { similarity: factsSimilarity };
  const sample = {
    id: "s1",
    answer: "Yes",
    answer_type: "closed" as const,
    reasoning: "CT. A large bright spot in the image's right half, the patient's left lung. Abnormal.",
    modality: "CT",
    extra: { lesion: true, side: "left", lesion_size: "large" },
  };
  it("scores the share of the sample's facts the <think> states", async () => {
    expect(await reasoningReward("<think>CT. A large bright spot, the patient's left lung. Abnormal.</think><answer>Yes</answer>", sample, ctx)).toBe(1);
    expect(await reasoningReward("<think>CT. A small bright spot, the patient's right lung. Abnormal.</think><answer>Yes</answer>", sample, ctx)).toBe(0.5);
    expect(await reasoningReward("<think>MRI. No lesion, normal.</think><answer>No</answer>", sample, ctx)).toBe(0);
  });
  it("without ground-truth fields it compares with the reference reasoning's facts", async () => {
    const { modality: _m, extra: _e, ...bare } = sample;
    expect(await reasoningReward("<think>CT. A small bright spot, the patient's right lung. Abnormal.</think>", bare, ctx)).toBe(0.5);
  });
});

describe("yes/no references", () => {
  it('"no abnormality" is not a yes/no reference; "No" does not match it', async () => {
    expect(isYesNoReference("No")).toBe(true);
    expect(isYesNoReference("yes.")).toBe(true);
    expect(isYesNoReference("no abnormality")).toBe(false);
    expect(isYesNoReference("Not present")).toBe(false);
    const s = { id: "x", answer: "no abnormality", answer_type: "closed" as const };
    expect(await accuracyReward("<answer>No</answer>", s, {})).toBe(0);
    expect(await accuracyReward("<answer>No abnormality.</answer>", s, {})).toBe(1);
    expect(await accuracyReward("<answer>no</answer>", { ...s, answer: "No" }, {})).toBe(1);
  });
});
