import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BertScorer } from "./bertscore/bertscore";
import { NoEncoderError, RewardConfigError, RewardInputError } from "./errors";
import { buildRewards, loadRewardConfig, resolveRewardConfig, scoreFile, validateRewardConfig } from "./index";
import { fixturesDir } from "@rarl/core";

const fx = fixturesDir();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-rewards-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, content: string): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, content);
  return p;
}
const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n");

const rows = [
  { id: "a", completion: "<think>The left lung shows a small opacity.</think><answer>yes</answer>", answer: "Yes", answer_type: "closed", reasoning: "There is a small opacity in the left lung." },
  { id: "b", completion: "<answer>B</answer>", answer: "spleen", answer_type: "choice", choices: ["liver", "spleen"] },
  { id: "c", completion: "<think>hmm</think> <answer>pneumonia</answer>", answer: "right lower lobe pneumonia#pneumonia (rll)", answer_type: "open", extra: 7 },
];

describe("rewards config", () => {
  it("rejects unknown keys, naming the path", () => {
    expect(() => validateRewardConfig({ rewards: [{ use: "format", wieght: 1 }] }, "r.json")).toThrow(/r\.json: .*rewards\[0\]\.wieght: unknown key/);
    expect(() => validateRewardConfig({ rewards: [{ use: "format" }], encodr: "x" })).toThrow(/encodr: unknown key/);
    expect(() => validateRewardConfig({ rewards: [] })).toThrow(/rewards: must NOT have fewer than 1 items/);
    expect(() => validateRewardConfig({ rewards: [{ use: "format" }], scorer: "rouge" })).toThrow(/scorer: must be one of "bertscore", "lexical-f1"/);
    expect(() => validateRewardConfig({ rewards: [{ weight: 1 }] })).toThrow(/rewards\[0\]\.use: required/);
  });
  it("length without tokenizer, and bertscore without encoder, are config errors", async () => {
    await expect(buildRewards({ rewards: [{ use: "length" }] })).rejects.toThrow(/needs `tokenizer`/);
    await expect(buildRewards({ rewards: [{ use: "accuracy" }], scorer: "bertscore" })).rejects.toThrow(RewardConfigError);
    await expect(buildRewards({ rewards: [{ use: "nope" }] })).rejects.toThrow(/rewards\[0\]\.use: .*unknown reward|not found/);
  });
  it("no encoder configured: open accuracy is an explicit NoEncoderError; lexical-f1 only when named", async () => {
    const input = write("in0.jsonl", jsonl([rows[2]]));
    const err = await scoreFile({ rewards: [{ use: "accuracy" }] }, input).catch((e) => e);
    expect(err).toBeInstanceOf(NoEncoderError);
    expect(err.details.sample).toBe("c");
    const lex = await scoreFile({ rewards: [{ use: "accuracy" }], scorer: "lexical-f1" }, input);
    expect(lex.lines[0].rewards.accuracy).toBe(1); // "pneumonia" is one of the '#' alternatives
  });
});

describe("scoreFile", () => {
  it("adds every component and the weighted total; loads the example plugin by package name", async () => {
    const cfgPath = write(
      "rewards.json",
      JSON.stringify({
        rewards: [
          { use: "format", weight: 1 },
          { use: "length", weight: 1 },
          { use: "accuracy", weight: 1 },
          { use: "reasoning", weight: 1 },
          { use: "@acme/rarl-reward-x", weight: 0.5 },
        ],
        encoder: path.join(fx, "bertscore-tiny"),
        tokenizer: path.join(fx, "qwen2vl-tiny", "tokenizer.json"),
      }),
    );
    const input = write("in.jsonl", `${jsonl(rows)}\n\n`);
    const out = path.join(tmp, "out.jsonl");
    const res = await scoreFile(cfgPath, input, out);
    const lines = fs.readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => l.id)).toEqual(["a", "b", "c"]);
    expect(lines[2].extra).toBe(7);
    expect(Object.keys(lines[0].rewards)).toEqual(["format", "length", "accuracy", "reasoning", "answer-brevity"]);
    for (const l of lines) {
      const w = { format: 1, length: 1, accuracy: 1, reasoning: 1, "answer-brevity": 0.5 } as Record<string, number>;
      const sum = Object.entries(l.rewards as Record<string, number>).reduce((s, [k, v]) => s + w[k] * v, 0);
      expect(l.total).toBeCloseTo(sum, 12);
    }
    expect(lines[0].rewards.format).toBe(1);
    expect(lines[1].rewards.format).toBe(0.1);
    expect(lines[2].rewards.format).toBe(1);
    expect(lines[0].rewards.accuracy).toBe(1);
    expect(lines[1].rewards.accuracy).toBe(1);
    expect(lines[1].rewards.reasoning).toBe(0); // no think, no reference reasoning
    // reasoning = BERTScore F1 of the fixture's pair 0 (think vs reference reasoning): 0.832454
    expect(Math.abs(lines[0].rewards.reasoning - 0.832454)).toBeLessThan(1e-5);
    // open accuracy = max BERTScore F1 over the expansions; "pneumonia" is an alternative -> 1
    expect(lines[2].rewards.accuracy).toBeCloseTo(1, 5);
    // length: Qwen2-VL tokens (<think> is not a special token) x 0.001
    expect(lines[1].rewards.length).toBeGreaterThan(0.005);
    expect(lines[1].rewards.length).toBeLessThan(0.02);
    expect(lines[0].rewards["answer-brevity"]).toBe(1);
    expect(res.mean.total).toBeCloseTo((lines[0].total + lines[1].total + lines[2].total) / 3, 12);
    expect(loadRewardConfig(cfgPath).baseDir).toBe(tmp);
  });
  it("resolveRewardConfig: a path is read relative to the config folder, an inline object is validated there", () => {
    const sub = path.join(tmp, "cfgdir");
    fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, "r.json"), JSON.stringify({ rewards: [{ use: "format", weight: 2 }] }));
    const fromFile = resolveRewardConfig("r.json", sub);
    expect(fromFile.baseDir).toBe(sub);
    expect(fromFile.config.rewards[0]).toMatchObject({ use: "format", weight: 2 });
    const inline = resolveRewardConfig({ rewards: [{ use: "length" }] }, "/some/dir");
    expect(inline.baseDir).toBe("/some/dir");
    expect(inline.config.rewards[0].use).toBe("length");
    expect(() => resolveRewardConfig({ rewards: [{ use: "format", wieght: 1 }] }, sub, "cfg.json:rewards")).toThrow(/cfg\.json:rewards: invalid rewards config/);
    expect(() => resolveRewardConfig("missing.json", sub)).toThrow(RewardConfigError);
  });
  it("bad input lines give RewardInputError naming file and line", async () => {
    const bad = write("bad.jsonl", `${JSON.stringify(rows[0])}\n{"id": "x", "completion": "c", "answer": "a", "answer_type": "boolean"}\n`);
    const err = await scoreFile({ rewards: [{ use: "format" }] }, bad).catch((e) => e);
    expect(err).toBeInstanceOf(RewardInputError);
    expect(err.message).toMatch(/bad\.jsonl:2: field "answer_type"/);
    const notJson = write("nj.jsonl", "{oops\n");
    await expect(scoreFile({ rewards: [{ use: "format" }] }, notJson)).rejects.toThrow(/nj\.jsonl:1: invalid JSON/);
  });
  it("idf: the reasoning scorer weights by the input's reference reasonings", async () => {
    const input = write("in2.jsonl", jsonl(rows));
    const cfg = { rewards: [{ use: "reasoning" }], encoder: path.join(fx, "bertscore-tiny") };
    const plain = await scoreFile(cfg, input);
    const idf = await scoreFile({ ...cfg, idf: true }, input);
    const direct = await BertScorer.fromFolder(path.join(fx, "bertscore-tiny"), { idfCorpus: [rows[0].reasoning as string] });
    const [want] = await direct.score(["The left lung shows a small opacity."], [rows[0].reasoning as string]);
    direct.dispose();
    expect(idf.lines[0].rewards.reasoning).toBeCloseTo(want, 6);
    expect(idf.lines[0].rewards.reasoning).not.toBeCloseTo(plain.lines[0].rewards.reasoning, 3);
  });
});
