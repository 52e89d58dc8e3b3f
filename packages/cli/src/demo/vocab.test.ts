import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { synthesize } from "@rarl/datasets";
import type { Sample } from "@rarl/datasets";
import { Qwen2VLProcessor } from "@rarl/model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoModelConfig } from "./checkpoint";
import { readJsonl } from "../report/io";
import { compactSamplesFile } from "./data";
import { byteLevelAlphabet, configForTrimmedVocab, DemoVocabError, demoCorpus, trimTokenizer, writeTrimmedTokenizer } from "./vocab";

const TOKENIZER = path.resolve(__dirname, "../../../../test-fixtures/qwen2vl-tokenizer");
let tmp: string;
let samples: Sample[];
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-vocab-"));
  await synthesize(path.join(tmp, "data"), { n: 24, size: 56, seed: 3 });
  compactSamplesFile(path.join(tmp, "data/samples.jsonl"), path.join(tmp, "data/compact.jsonl"));
  samples = readJsonl<Sample>(path.join(tmp, "data/compact.jsonl"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("byteLevelAlphabet", () => {
  it("is GPT-2's 256 distinct one-character byte tokens, printable ASCII mapped to itself", () => {
    const a = byteLevelAlphabet();
    expect(new Set(a).size).toBe(256);
    expect(a[65]).toBe("A");
    expect(a[32]).toBe("Ġ"); // space
    expect(a[10]).toBe("Ċ"); // newline
  });
});

describe("trimmed demo tokenizer", () => {
  it("segments the demo's texts exactly as the full Qwen2-VL tokenizer, renumbered, and still encodes any text", async () => {
    const full = Qwen2VLProcessor.fromPretrained(TOKENIZER);
    const corpus = demoCorpus(full, samples);
    expect(corpus.length).toBe(samples.length * 6); // 5 built-in templates + the target, per sample
    const dir = path.join(tmp, "trimmed");
    const trimmed = await writeTrimmedTokenizer(TOKENIZER, dir, corpus);
    expect(trimmed.size).toBeLessThan(2000);
    expect(trimmed.size).toBeGreaterThan(256 + 14);
    const small = Qwen2VLProcessor.fromPretrained(dir);
    expect(small.tokenizer.vocabSize).toBe(trimmed.size);
    for (const text of corpus) {
      const a = await full.tokenizer.encode(text);
      const b = await small.tokenizer.encode(text);
      expect(b).toEqual(a.map((id) => trimmed.idMap.get(id)));
      expect(await small.tokenizer.decode(b, { skipSpecialTokens: false })).toBe(text);
    }
    // Text outside the corpus falls back to smaller pieces (bytes at worst) and round-trips.
    const odd = "Ångström 漢字 ∑ zebra<|im_end|>";
    const ids = await small.tokenizer.encode(odd);
    expect(Math.max(...ids)).toBeLessThan(trimmed.size);
    expect(await small.tokenizer.decode(ids, { skipSpecialTokens: false })).toBe(odd);
    // Special tokens keep their names; config.json and generation_config.json point at the new ids.
    const cfg = configForTrimmedVocab(demoModelConfig(), trimmed);
    expect(cfg.vocab_size).toBe(trimmed.size);
    expect(cfg.image_token_id).toBe(small.tokenizer.specialIds.imagePad);
    expect(cfg.vision_start_token_id).toBe(small.tokenizer.specialIds.visionStart);
    expect(cfg.eos_token_id).toBe(small.tokenizer.specialIds.imEnd);
    const gc = JSON.parse(fs.readFileSync(path.join(dir, "generation_config.json"), "utf8"));
    expect(gc.eos_token_id).toEqual([small.tokenizer.specialIds.imEnd, small.tokenizer.specialIds.pad]);
    const tc = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
    expect(tc.added_tokens_decoder[String(small.tokenizer.specialIds.imagePad)].content).toBe("<|image_pad|>");
  });

  it("rejects a tokenizer.json that is not a byte-level BPE, and ids it does not have", () => {
    expect(() => trimTokenizer({ model: { type: "WordPiece", vocab: {} } }, [])).toThrow(DemoVocabError);
    const json = JSON.parse(fs.readFileSync(path.join(TOKENIZER, "tokenizer.json"), "utf8"));
    expect(() => trimTokenizer(json, [999_999])).toThrow(/token id 999999 is not in tokenizer.json's vocabulary/);
  });
});
