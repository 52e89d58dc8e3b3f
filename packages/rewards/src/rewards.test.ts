import { RarlError } from "@rarl/core";
import { describe, expect, it } from "vitest";
import {
  accuracyReward,
  CompositeReward,
  canonicalYesNo,
  defineReward,
  expandReference,
  extractAnswer,
  extractThink,
  formatReward,
  lexicalF1,
  matchChoice,
  NoEncoderError,
  normalizeAnswer,
  type RewardContext,
  RewardPluginError,
  RewardRegistry,
  type RewardSample,
  reasoningReward,
  type TextSimilarity,
  tokenF1,
} from "./index";

const closed: RewardSample = { id: "c1", answer: "Yes", answer_type: "closed" };
const lex: RewardContext = { similarity: lexicalF1 };

describe("format reward: every branch", () => {
  it.each([
    ["<think>a</think><answer>b</answer>", 1],
    ["  <think>\nreason\n</think>\n\n<answer> yes </answer>\n", 1],
    ["<think></think><answer></answer>", 1],
    ["<think>a</think>x<answer>b</answer>", 0.1], // text between the blocks
    ["hi <think>a</think><answer>b</answer>", 0.1], // text before
    ["<think>a</think><answer>b</answer> bye", 0.1], // text after
    ["<answer>b</answer><think>a</think>", 0.1], // wrong order
    ["<think>a<think>b</think></think><answer>c</answer>", 0.1], // nested / repeated
    ["<think>a</think><answer>b</answer><answer>c</answer>", 0.1], // repeated block
    ["<think>only thinking</think>", 0.1], // one block
    ["<answer>yes</answer>", 0.1],
    ["<think>unclosed <answer>b", 0.1],
    ["</answer>", 0.1], // a single stray tag is partial
    ["<THINK>a</THINK><ANSWER>b</ANSWER>", 0], // case-sensitive: no tags
    ["<think >a</think ><answer >b</answer >", 0], // not the tag strings
    ["plain answer", 0],
    ["", 0],
  ])("%j -> %s", (text, want) => {
    expect(formatReward(text)).toBe(want);
  });
});

describe("answer / think extraction", () => {
  it("takes the last <answer> block, an unclosed one, or the completion without <think>", () => {
    expect(extractAnswer("<think>x</think><answer> Yes </answer>")).toBe("Yes");
    expect(extractAnswer("<answer>a</answer> then <answer>b</answer>")).toBe("b");
    expect(extractAnswer("<think>x</think><answer>liver")).toBe("liver");
    expect(extractAnswer("<think>long reasoning</think> The liver.")).toBe("The liver.");
    expect(extractAnswer("just text")).toBe("just text");
    expect(extractThink("<think> a b </think>")).toBe("a b");
    expect(extractThink("<think>unclosed")).toBeNull();
    expect(extractThink("no tags")).toBeNull();
  });
});

describe("normalisation", () => {
  it("ignores case, punctuation, articles and accents", () => {
    expect(normalizeAnswer("The  Left-Kidney, an Organ!")).toBe("left kidney organ");
    expect(normalizeAnswer("Café résumé")).toBe("cafe resume");
  });
  it("maps yes/no synonyms", () => {
    for (const s of ["yes", "Yes.", "TRUE", "Yes, there is a fracture", "present", "correct"]) expect(canonicalYesNo(s)).toBe("yes");
    for (const s of ["No", "no.", "False", "absent", "Not present", "none", "negative"]) expect(canonicalYesNo(s)).toBe("no");
    expect(canonicalYesNo("maybe")).toBeNull();
  });
  it("expands VQA-Med 2019 references: '#' alternatives and optional (…) parts", () => {
    expect(expandReference("(left) kidney#renal").sort()).toEqual(["kidney", "left kidney", "renal"]);
    expect(expandReference("ct (with contrast) (axial)").sort()).toEqual(["ct", "ct axial", "ct with contrast", "ct with contrast axial"]);
    expect(expandReference("plain")).toEqual(["plain"]);
    expect(expandReference("")).toEqual([]);
  });
  it("matches option letters and option texts", () => {
    const ch = ["liver", "spleen", "a mass"];
    expect(matchChoice("B", ch)).toBe(1);
    expect(matchChoice("(b)", ch)).toBe(1);
    expect(matchChoice("B. spleen", ch)).toBe(1);
    expect(matchChoice("The answer is B", ch)).toBe(1);
    expect(matchChoice("Spleen.", ch)).toBe(1);
    expect(matchChoice("a mass", ch)).toBe(2); // the article-word "a" is not option A here
    expect(matchChoice("D", ch)).toBeNull();
    expect(matchChoice("kidney", ch)).toBeNull();
  });
});

describe("accuracy reward", () => {
  it("closed: 1/0 with yes/no synonyms", async () => {
    expect(await accuracyReward("<think>t</think><answer>yes</answer>", closed, {})).toBe(1);
    expect(await accuracyReward("<answer>Yes, it is present.</answer>", closed, {})).toBe(1);
    expect(await accuracyReward("<answer>No</answer>", closed, {})).toBe(0);
    expect(await accuracyReward("<answer></answer>", closed, {})).toBe(0);
    const nonYesNo: RewardSample = { id: "c2", answer: "Left", answer_type: "closed" };
    expect(await accuracyReward("<answer>the left.</answer>", nonYesNo, {})).toBe(1);
    expect(await accuracyReward("<answer>right</answer>", nonYesNo, {})).toBe(0);
  });
  it("choice: letter or text, reference as letter or text", async () => {
    const s: RewardSample = { id: "m", answer: "spleen", answer_type: "choice", choices: ["liver", "spleen"] };
    expect(await accuracyReward("<answer>B</answer>", s, {})).toBe(1);
    expect(await accuracyReward("<answer>Spleen</answer>", s, {})).toBe(1);
    expect(await accuracyReward("<answer>A</answer>", s, {})).toBe(0);
    expect(await accuracyReward("<answer>(b) spleen</answer>", { ...s, answer: "B" }, {})).toBe(1);
    expect(await accuracyReward("<answer>liver</answer>", { ...s, answer: "B" }, {})).toBe(0);
  });
  it("VQA-Med alternatives: any expansion matches", async () => {
    const s: RewardSample = { id: "v", answer: "(left) kidney#renal", answer_type: "closed" };
    for (const p of ["kidney", "Left kidney", "renal"]) expect(await accuracyReward(`<answer>${p}</answer>`, s, {})).toBe(1);
    expect(await accuracyReward("<answer>right kidney</answer>", s, {})).toBe(0);
  });
  it("open: best similarity over expansions; no scorer -> NoEncoderError", async () => {
    const s: RewardSample = { id: "o", answer: "small opacity (left lung)#nodule", answer_type: "open" };
    expect(await accuracyReward("<answer>a small opacity</answer>", s, lex)).toBe(1);
    expect(await accuracyReward("<answer>opacity left</answer>", s, lex)).toBeCloseTo(tokenF1("opacity left", "small opacity left lung"), 12);
    const err = await accuracyReward("<answer>x</answer>", s, {}).catch((e) => e);
    expect(err).toBeInstanceOf(NoEncoderError);
    expect(err).toBeInstanceOf(RarlError);
    expect(err.message).toMatch(/lexical-f1/);
  });
});

describe("reasoning reward", () => {
  const s: RewardSample = { id: "r", answer: "yes", answer_type: "closed", reasoning: "The left lung shows an opacity." };
  it("scores <think> against the reference reasoning with a pluggable scorer", async () => {
    expect(await reasoningReward("<think>the left lung shows an opacity</think><answer>yes</answer>", s, lex)).toBe(1);
    const seen: string[][] = [];
    const fake: TextSimilarity = {
      name: "fake",
      async score(c, r) {
        seen.push([...c, ...r]);
        return c.map(() => 0.25);
      },
    };
    expect(await reasoningReward("<think> because </think>", s, { similarity: lexicalF1, reasoningSimilarity: fake })).toBe(0.25);
    expect(seen).toEqual([["because", "The left lung shows an opacity."]]);
  });
  it("is 0 when either side is missing", async () => {
    expect(await reasoningReward("<answer>yes</answer>", s, lex)).toBe(0);
    expect(await reasoningReward("<think>  </think>", s, lex)).toBe(0);
    expect(await reasoningReward("<think>x</think>", { ...s, reasoning: undefined }, lex)).toBe(0);
    expect(await reasoningReward("<think>x</think>", { ...s, reasoning: "" }, {})).toBe(0); // no scorer needed then
  });
});

describe("composite and plugins", () => {
  it("reports every component and the weighted sum", async () => {
    const reg = new RewardRegistry();
    const comp = new CompositeReward([
      { reward: reg.get("format"), weight: 1 },
      { reward: reg.get("accuracy"), weight: 0.5 },
      { reward: defineReward({ name: "const", fn: () => 0.2 }), weight: 2 },
    ]);
    const r = await comp.score("<think>a</think><answer>yes</answer>", closed, {});
    expect(r.components).toEqual({ format: 1, accuracy: 1, const: 0.2 });
    expect(r.total).toBeCloseTo(1 + 0.5 + 0.4, 12);
    expect(() => new CompositeReward([{ reward: reg.get("format"), weight: 1 }, { reward: reg.get("format"), weight: 1 }])).toThrow(/used twice/);
  });
  it("bad plugin results become RewardPluginError naming the plugin and the sample", async () => {
    const cases: Array<[string, () => unknown, string]> = [
      ["thrower", () => { throw new Error("boom"); }, "REWARD_THREW"],
      ["stringy", () => "0.5", "REWARD_NOT_A_NUMBER"],
      ["nan", () => Number.NaN, "REWARD_NOT_A_NUMBER"],
      ["big", () => 1.5, "REWARD_OUT_OF_RANGE"],
      ["neg", async () => -0.1, "REWARD_OUT_OF_RANGE"],
    ];
    for (const [name, fn, code] of cases) {
      const comp = new CompositeReward([{ reward: defineReward({ name, fn: fn as any }), weight: 1 }]);
      const err = await comp.score("x", { ...closed, id: "sample-42" }, {}).catch((e) => e);
      expect(err).toBeInstanceOf(RewardPluginError);
      expect(err.code).toBe(code);
      expect(err.message).toContain(`"${name}"`);
      expect(err.message).toContain('"sample-42"');
      expect(err.details).toMatchObject({ plugin: name, sample: "sample-42" });
    }
  });
  it("async rewards run with bounded concurrency", async () => {
    let active = 0;
    let peak = 0;
    const slow = defineReward({
      name: "judge",
      async: true,
      fn: async () => {
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
        return 0.5;
      },
    });
    const comp = new CompositeReward([{ reward: slow, weight: 1 }], { concurrency: 3 });
    const out = await comp.scoreBatch(
      Array.from({ length: 12 }, (_, i) => ({ completion: "x", sample: { ...closed, id: `s${i}` } })),
      {},
    );
    expect(out.map((o) => o.total)).toEqual(Array(12).fill(0.5));
    expect(peak).toBe(3);
  });
  it("registry rejects duplicates and unknown names", () => {
    const reg = new RewardRegistry();
    expect(() => reg.register({ name: "format", fn: () => 0 })).toThrow(/already registered/);
    expect(() => reg.get("nope")).toThrow(/unknown reward "nope"/);
  });
});
