import path from "node:path";
import { initBackend } from "@rarl/core";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BertScorer } from "./bertscore/bertscore";
import { accuracyReward, formatReward, lengthReward, lexicalF1, loadTokenCounter, type RewardContext, type RewardSample, reasoningReward } from "./index";
import { fixturesDir } from "@rarl/core";

// Arbitrary strings: full Unicode incl. lone surrogates ("binary" units), mixed with the four tags so that the
// structured branches (exact, partial, nested, unclosed) are hit too.
const piece = fc.oneof(
  fc.string({ unit: "binary", maxLength: 30 }),
  fc.constantFrom("<think>", "</think>", "<answer>", "</answer>", " ", "\n", "yes", "No.", "B", "(a)", "#", "(", ")"),
);
const free = fc.array(piece, { maxLength: 12 }).map((p) => p.join(""));
const text = fc.oneof(free, fc.tuple(free, free).map(([t, a]) => `<think>${t}</think><answer>${a}</answer>`));
const sampleArb: fc.Arbitrary<RewardSample> = fc.record({
  id: fc.string({ maxLength: 5 }),
  answer: text,
  reasoning: fc.option(text, { nil: undefined }),
  answer_type: fc.constantFrom("closed" as const, "open" as const, "choice" as const),
  choices: fc.option(fc.array(text, { maxLength: 4 }), { nil: undefined }),
});

let ctx: RewardContext;
let bert: BertScorer;
const TAIL = "</think><answer>yes ü 🙂</answer>";
const MB = `<think>${"The lesion is hyperintense on T2 with surrounding edema; ".repeat(20_000)}`.slice(0, (1 << 20) - TAIL.length) + TAIL;

beforeAll(async () => {
  await initBackend();
  bert = await BertScorer.fromFolder(path.join(fixturesDir(), "bertscore-tiny"));
  ctx = { tokenizer: loadTokenCounter(path.join(fixturesDir(), "qwen2vl-tiny", "tokenizer.json")), similarity: bert };
});
afterAll(() => bert.dispose());

const rewards = {
  format: async (c: string, _s: RewardSample, _x: RewardContext) => formatReward(c),
  length: lengthReward,
  accuracy: accuracyReward,
  reasoning: reasoningReward,
};

describe("every built-in reward is total, deterministic and in [0, 1]", () => {
  for (const [name, fn] of Object.entries(rewards)) {
    it(`${name}: arbitrary strings (BERTScore and lexical scorers)`, async () => {
      await fc.assert(
        fc.asyncProperty(text, sampleArb, fc.boolean(), async (completion, sample, lexical) => {
          const c = lexical ? { ...ctx, similarity: lexicalF1 } : ctx;
          const a = await fn(completion, sample, c);
          const b = await fn(completion, sample, c);
          expect(typeof a).toBe("number");
          expect(a).toBeGreaterThanOrEqual(0);
          expect(a).toBeLessThanOrEqual(1);
          expect(b).toBe(a);
        }),
        { numRuns: name === "format" ? 300 : 40, seed: 20261122 },
      );
    });
  }
  it("a 1 MB completion, empty strings and malformed tags return numbers", async () => {
    const s: RewardSample = { id: "big", answer: "yes", answer_type: "open", reasoning: "hyperintense lesion with edema" };
    expect(MB.length).toBe(1 << 20);
    for (const [name, fn] of Object.entries(rewards)) {
      for (const c of [MB, "", "<think><think></answer></think>", "<answer><answer>x</answer></answer>", "\uD800 \uDFFF"]) {
        const v = await fn(c, s, ctx);
        expect(v, `${name} on ${c.slice(0, 20)}`).toBeGreaterThanOrEqual(0);
        expect(v).toBeLessThanOrEqual(1);
      }
    }
    expect(formatReward(MB)).toBe(1);
    expect(await lengthReward(MB, s, ctx)).toBe(1);
  });
});
