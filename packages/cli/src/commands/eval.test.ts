import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixturesDir } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { EvalInputError, parseDataSpec, runEval, runEvalWithHeadroom, splitThinkAnswer } from "../eval/run-eval";
import { runCli } from "../program";
import { readJsonl } from "../report/io";

const FIXTURE = path.join(fixturesDir(), "qwen2vl-tiny");
let tmp: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-eval-cli-"));
  await synthesize(path.join(tmp, "synth"), { n: 12, size: 56, seed: 5 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const lines = (f: string) => readJsonl<any>(f);

describe("splitThinkAnswer", () => {
  it("splits <think>/<answer>, tolerates a missing closing tag and untagged text", () => {
    expect(splitThinkAnswer("<think> a b </think><answer> Yes </answer>")).toEqual({ reasoning: "a b", answer: "Yes" });
    expect(splitThinkAnswer("<think>x</think><answer>left")).toEqual({ reasoning: "x", answer: "left" });
    expect(splitThinkAnswer("just text")).toEqual({ reasoning: undefined, answer: "just text" });
    expect(splitThinkAnswer("<think>only thinking")).toEqual({ reasoning: "only thinking", answer: "" });
  });
});

describe("parseDataSpec", () => {
  it("splits at the first colon and rejects specs without a format or path", () => {
    expect(parseDataSpec("rarl:a/b:c.jsonl")).toEqual({ format: "rarl", path: "a/b:c.jsonl" });
    expect(() => parseDataSpec("data.jsonl")).toThrow(EvalInputError);
    expect(() => parseDataSpec("rarl:")).toThrow(/<format>:<path>/);
  });
});

describe("rarl eval", () => {
  it("headroom: G samples per question with the sampler options, judged; training-template prompting; bad prompt named", async () => {
    const data = `rarl:${path.join(tmp, "synth/samples.jsonl")}`;
    const hOut = path.join(tmp, "headroom.json");
    const r = await runEvalWithHeadroom({ model: FIXTURE, data, prompt: "explanation-required", split: "test", limit: 2, out: path.join(tmp, "h.jsonl"), maxNewTokens: 3, batchSize: 2, samples: 3, temperature: 1, topK: 5, headroomOut: hOut });
    expect(r.records).toHaveLength(2);
    const h = r.headroom!;
    expect(h).toMatchObject({ n: 2, g: 3 });
    for (const k of ["greedy", "pass_at_1", "pass_at_g", "maj_at_g", "flippable", "all_equal"] as const) {
      expect(h[k]).toBeGreaterThanOrEqual(0);
      expect(h[k]).toBeLessThanOrEqual(1);
    }
    expect(h.pass_at_g).toBeGreaterThanOrEqual(h.pass_at_1);
    const written = JSON.parse(fs.readFileSync(hOut, "utf8"));
    expect(written.metrics).toEqual(h);
    expect(written.sampler).toMatchObject({ temperature: 1, topK: 5, prompt: "explanation-required" });
    expect(written.items).toHaveLength(2);
    expect(written.items[0].answers).toHaveLength(3);
    // the §3.3 reasoning prompt runs on the same data too (the training template is a separate --prompt choice)
    const reasoning = await runEval({ model: FIXTURE, data, prompt: "reasoning", split: "test", limit: 2, out: path.join(tmp, "h2.jsonl"), maxNewTokens: 3, batchSize: 2 });
    expect(reasoning).toHaveLength(2);
    await expect(runEval({ model: FIXTURE, data, prompt: "nope", out: path.join(tmp, "x.jsonl") })).rejects.toThrow(/--prompt must be one of .*explanation-required.*got "nope"/);
  });

  it("answers the test split with the tiny fixture (batched greedy) and writes the judge's predictions format", async () => {
    const out = path.join(tmp, "preds.jsonl");
    const recs = await runEval({ model: FIXTURE, data: `rarl:${path.join(tmp, "synth/samples.jsonl")}`, prompt: "reasoning", split: "test", out, maxNewTokens: 6, batchSize: 2 });
    const all = lines(path.join(tmp, "synth/samples.jsonl")).filter((s) => s.split === "test");
    expect(recs.length).toBe(all.length);
    const written = lines(out);
    expect(written.map((r) => r.id)).toEqual(all.map((s) => s.id));
    for (const [i, r] of written.entries()) {
      expect(r).toMatchObject({ dataset: "synth", question: all[i].question, reference: all[i].answer, reference_reasoning: all[i].reasoning });
      expect(typeof r.prediction).toBe("string");
      expect(splitThinkAnswer(r.completion).answer).toBe(r.prediction);
    }
    // greedy decoding is deterministic, and a batch gives the same text as one prompt at a time
    const one = await runEval({ model: FIXTURE, data: `rarl:${path.join(tmp, "synth/samples.jsonl")}`, prompt: "reasoning", split: "test", out: path.join(tmp, "p1.jsonl"), maxNewTokens: 6, batchSize: 1 });
    expect(one.map((r) => r.completion)).toEqual(recs.map((r) => r.completion));
  });

  it("--judge offline chains the judge and prints the report; bad paths fail fast with the path named", async () => {
    const out = path.join(tmp, "cli-preds.jsonl");
    const write = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      const code = await runCli(["eval", "--model", FIXTURE, "--data", `rarl:${path.join(tmp, "synth/samples.jsonl")}`, "--prompt", "non-reasoning", "--limit", "3", "--max-new-tokens", "4", "--out", out, "--judge", "offline", "--quiet"]);
      expect(code).toBe(0);
      const printed = write.mock.calls.map((c) => String(c[0])).join("");
      expect(printed).toMatch(/offline/);
      const judged = lines(path.join(tmp, "cli-preds.judged.jsonl"));
      expect(judged.length).toBe(3);
      expect(judged.every((r) => r.status === "scored" && (r.prediction_score === 0 || r.prediction_score === 1))).toBe(true);
      err.mockClear();
      const t = performance.now();
      expect(await runCli(["eval", "--model", path.join(tmp, "nope"), "--data", "rarl:x.jsonl", "--out", out])).toBe(1);
      expect(performance.now() - t).toBeLessThan(1000);
      expect(err.mock.calls.map((c) => String(c[0])).join("")).toMatch(/--model .*nope: not a model folder/);
      expect(await runCli(["eval", "--model", FIXTURE, "--data", "rarl:x.jsonl", "--prompt", "chatty", "--out", out])).toBe(1);
    } finally {
      write.mockRestore();
      err.mockRestore();
    }
  });
});

describe("rarl generate", () => {
  it("prints n sampled completions for a text + image prompt as JSON (seeded: same seed, same text)", async () => {
    const img = path.join(tmp, "synth/images", fs.readdirSync(path.join(tmp, "synth/images"))[0]);
    const write = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      const args = ["generate", "--model", FIXTURE, "--prompt", "Is there a lesion?", "--image", img, "-n", "2", "--max-new-tokens", "5", "--seed", "7", "--json"];
      expect(await runCli(args)).toBe(0);
      const first = write.mock.calls.map((c) => JSON.parse(String(c[0])));
      expect(first.length).toBe(2);
      for (const r of first) expect(Object.keys(r)).toEqual(expect.arrayContaining(["text", "answer"]));
      write.mockClear();
      expect(await runCli(args)).toBe(0);
      expect(write.mock.calls.map((c) => JSON.parse(String(c[0])))).toEqual(first);
    } finally {
      write.mockRestore();
    }
  });
});
