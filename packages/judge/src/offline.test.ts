import path from "node:path";
import { fixturesDir } from "@rarl/core";
import type { RewardDefinition, RewardFn, TextSimilarity } from "@rarl/rewards";
import { describe, expect, it } from "vitest";
import { Judge } from "./judge";
import { isClosed, offlineVerdict } from "./offline";
import { judgeReward, judgeRewardDefinition, splitCompletion } from "./reward";

const s = (reference: string, prediction: string, extra = {}) => ({ id: "1", dataset: "SLAKE", question: "q", reference, prediction, ...extra });

describe("offline judge (not an LLM judge)", () => {
  it("closed questions: normalised yes/no match", async () => {
    expect(isClosed("Yes")).toBe(true);
    expect(isClosed("pneumonia")).toBe(false);
    expect((await offlineVerdict(s("Yes", "yes, the liver looks normal."))).prediction_score).toBe(1);
    expect((await offlineVerdict(s("No", "Yes."))).prediction_score).toBe(0);
  });
  it("open questions: exact normalised match or similarity over the threshold", async () => {
    expect((await offlineVerdict(s("The Pneumonia", "pneumonia!"))).prediction_score).toBe(1);
    expect((await offlineVerdict(s("right lower lobe pneumonia", "pneumonia in right lower lobe"))).prediction_score).toBe(1);
    expect((await offlineVerdict(s("right lower lobe pneumonia", "cardiomegaly"))).prediction_score).toBe(0);
    const v = await offlineVerdict(s("kidney", "kidney stone"));
    expect(v.evaluation).toMatch(/^offline \(not an LLM judge\): open question, lexical-f1 0\.667/);
  });
  it("open findings by structured facts: the side swap is wrong, all facts must agree", async () => {
    const ref = "large lesion in the left lung";
    const swap = await offlineVerdict(s(ref, "small lesion in the right lung"));
    expect(swap.prediction_score).toBe(0);
    expect(swap.evaluation).toMatch(/structured facts 1\/3/);
    expect((await offlineVerdict(s(ref, "large lesion in the right lung"))).prediction_score).toBe(0);
    expect((await offlineVerdict(s(ref, "A large lesion, patient's left lung."))).prediction_score).toBe(1);
    // with facts off, the old unigram F1 passes the swap (why the default changed)
    expect((await offlineVerdict(s(ref, "small lesion in the right lung"), { facts: false })).prediction_score).toBe(1);
  });
  it('"no abnormality" is not a yes/no reference: "No" alone does not pass', async () => {
    expect(isClosed("no abnormality")).toBe(false);
    expect(isClosed("No")).toBe(true);
    expect((await offlineVerdict(s("no abnormality", "No"))).prediction_score).toBe(0);
    expect((await offlineVerdict(s("no abnormality", "a lesion in the left lung"))).prediction_score).toBe(0);
    expect((await offlineVerdict(s("no abnormality", "normal"))).prediction_score).toBe(1);
  });
  it("reasoning by structured facts: every fact of the reference reasoning", async () => {
    const ref = { reference_reasoning: "CT. A large bright spot in the image's right half, the patient's left lung. Abnormal." };
    const ok = await offlineVerdict(s("Yes", "Yes", { ...ref, prediction_reasoning: "CT. A large bright spot, the patient's left lung. Abnormal." }));
    expect(ok.reasoning_score).toBe(1);
    const swapped = await offlineVerdict(s("Yes", "Yes", { ...ref, prediction_reasoning: "CT. A large bright spot in the image's left half, the patient's right lung. Abnormal." }));
    expect(swapped.reasoning_score).toBe(0);
    expect(swapped.evaluation).toMatch(/reasoning structured facts 3\/4/);
  });
  it("uses a given similarity scorer (e.g. BERTScore) and threshold", async () => {
    const calls: string[][] = [];
    const fake: TextSimilarity = {
      name: "bertscore",
      async score(c, r) {
        calls.push([...c, ...r]);
        return c.map(() => 0.9);
      },
    };
    const v = await offlineVerdict(s("heart", "cardiac silhouette"), { similarity: fake, threshold: 0.88 });
    expect(v.prediction_score).toBe(1);
    expect(calls[0]).toEqual(["cardiac silhouette", "heart"]);
    expect((await offlineVerdict(s("heart", "lung"), { similarity: fake, threshold: 0.95 })).prediction_score).toBe(0);
  });
  it("scores reasoning only when the sample has reference reasoning", async () => {
    expect((await offlineVerdict(s("Yes", "Yes"))).reasoning_score).toBeNull();
    const r = await offlineVerdict(s("Yes", "Yes", { reference_reasoning: "the liver is normal in size", prediction_reasoning: "liver is normal in size" }));
    expect(r.reasoning_score).toBe(1);
    expect((await offlineVerdict(s("Yes", "Yes", { reference_reasoning: "the liver is normal" }))).reasoning_score).toBe(0);
  });
});

describe("judge-as-reward adapter", () => {
  it("splits <think>/<answer> and returns prediction + reasoning scores", async () => {
    expect(splitCompletion("<think> a b </think><answer> yes </answer>")).toEqual({ reasoning: "a b", answer: "yes" });
    expect(splitCompletion("just text")).toEqual({ reasoning: undefined, answer: "just text" });
    // structurally a @rarl/rewards RewardFn (checked by tsc)
    const reward: RewardFn = judgeReward(Judge.create({ judge: "offline" }), { reasoningWeight: 0.5 });
    const sample = { id: "x", question: "Is the liver normal?", answer: "Yes", answer_type: "closed" as const, reasoning: "the liver is normal in size" };
    expect(await reward("<think>liver is normal in size</think><answer>Yes</answer>", sample, {})).toBe(1.5);
    expect(await reward("<think>heart</think><answer>No</answer>", sample, {})).toBe(0);
    expect(await reward("<answer>Yes</answer>", { ...sample, reasoning: undefined }, {})).toBe(1);
    const def: RewardDefinition = judgeRewardDefinition(Judge.create({ judge: "offline" }));
    expect(def).toMatchObject({ name: "judge", async: true });
    expect(await def.fn("<answer>No</answer>", sample, {})).toBe(0);
  });
});

describe("offline judge with BERTScore (@rarl/rewards BertScorer on the bertscore-tiny fixture)", () => {
  it("loads the encoder once, scores open answers by BERTScore F1 against the threshold", async () => {
    const encoderDir = path.join(fixturesDir(), "bertscore-tiny");
    const j = Judge.create({ judge: "offline", offline: { encoderDir, threshold: 0.999, facts: false } });
    const same = await j.judge(s("a chest x-ray with pneumonia", "A chest x-ray with pneumonia."));
    const diff = await j.judge(s("a chest x-ray with pneumonia", "the liver looks normal"));
    expect(same.verdict?.prediction_score).toBe(1); // normalised exact match
    expect(diff.verdict?.prediction_score).toBe(0);
    expect(diff.verdict?.evaluation).toMatch(/open question, bertscore 0\.\d{3} vs threshold 0\.999/);
    const f1 = Number(/bertscore (0\.\d+)/.exec(diff.verdict!.evaluation)![1]);
    const lenient = Judge.create({ judge: "offline", offline: { encoderDir, threshold: f1 - 0.01, facts: false } });
    expect((await lenient.judge(s("a chest x-ray with pneumonia", "the liver looks normal"))).verdict?.prediction_score).toBe(1);
    j.close();
    lenient.close();
    expect(() => Judge.create({ judge: "offline", offline: { encoderDir: "/nonexistent-enc" } })).toThrow(/encoder folder \/nonexistent-enc has no config\.json/);
  });
});
