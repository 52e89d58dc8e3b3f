import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { initBackend } from "@rarl/core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { BertScorer } from "./bertscore/bertscore";
import { CompositeReward, lexicalF1, loadTokenCounter, type RewardContext, RewardRegistry, type RewardSample, reasoningReward } from "./index";
import { fixturesDir } from "@rarl/core";

// Produces the README's table of reward values. `UPDATE_README=1 npx vitest run src/readme-table.test.ts` rewrites it;
// otherwise the test fails when the README's table differs from what the code computes (so it cannot go stale).

const R = "There is a small opacity in the left lung, consistent with a nodule.";
const closed: RewardSample = { id: "q1", answer: "yes", answer_type: "closed", reasoning: R };
const choice: RewardSample = { id: "q2", answer: "B", answer_type: "choice", choices: ["liver", "spleen", "kidney"] };
const open: RewardSample = { id: "q3", answer: "pulmonary nodule#nodule (left lung)", answer_type: "open", reasoning: R };

const CASES: Array<[string, string, RewardSample]> = [
  ["exact format, correct yes/no", "<think>There is a small opacity in the left lung.</think><answer>Yes</answer>", closed],
  ["exact format, wrong yes/no", "<think>The lungs look clear.</think><answer>no</answer>", closed],
  ["yes/no synonym, no tags", "Yes, it is present.", closed],
  ["only an answer block (partial)", "<answer>yes</answer>", closed],
  ["text outside the blocks (partial)", "Sure! <think>opacity in the left lung</think><answer>yes</answer>", closed],
  ["choice by letter", "<think>The organ shown is the spleen.</think><answer>B</answer>", choice],
  ["choice by option text", "<think>Left upper quadrant organ.</think>\n<answer>the Spleen.</answer>", choice],
  ["open, matches an alternative", "<think>A small opacity in the left lung.</think><answer>Nodule</answer>", open],
  ["open, different answer", "<think>Dense consolidation.</think><answer>lobar pneumonia</answer>", open],
  ["nested tags (partial)", "<think><think>left lung opacity</think></think><answer>nodule</answer>", open],
  ["empty completion", "", open],
];

let bert: BertScorer;
let ctx: RewardContext;
beforeAll(async () => {
  await initBackend();
  bert = await BertScorer.fromFolder(path.join(fixturesDir(), "bertscore-tiny"));
  ctx = { tokenizer: loadTokenCounter(path.join(fixturesDir(), "qwen2vl-tiny", "tokenizer.json")), similarity: bert };
});
afterAll(() => bert.dispose());

const f = (x: number) => x.toFixed(4);
const md = (s: string) => (s === "" ? '""' : `\`${s.replace(/\n/g, "\\n").replace(/\|/g, "\\|")}\``);

it("README reward table is up to date", async () => {
  const reg = new RewardRegistry();
  const comp = new CompositeReward(["format", "length", "accuracy", "reasoning"].map((n) => ({ reward: reg.get(n), weight: 1 })));
  const rows = ["| case | completion | answer_type (reference) | format | length | accuracy | reasoning | reasoning (lexical-f1) | total |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"];
  for (const [label, completion, sample] of CASES) {
    const s = await comp.score(completion, sample, ctx);
    const lex = await reasoningReward(completion, sample, { similarity: lexicalF1 });
    const c = s.components;
    rows.push(
      `| ${label} | ${md(completion)} | ${sample.answer_type} (${md(sample.answer)}) | ${f(c.format)} | ${f(c.length)} | ${f(c.accuracy)} | ${f(c.reasoning)} | ${f(lex)} | ${f(s.total)} |`,
    );
  }
  const table = rows.join("\n");
  const readme = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "README.md");
  const text = fs.readFileSync(readme, "utf8");
  const start = "<!-- reward-table:start -->\n";
  const end = "\n<!-- reward-table:end -->";
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  expect(a).toBeGreaterThanOrEqual(0);
  expect(b).toBeGreaterThan(a);
  if (process.env.UPDATE_README === "1") fs.writeFileSync(readme, text.slice(0, a + start.length) + table + text.slice(b));
  else expect(text.slice(a + start.length, b)).toBe(table);
});
