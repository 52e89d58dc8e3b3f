import fs from "node:fs";
import path from "node:path";
import { RarlError, writeFileAtomic } from "@rarl/core";
import type { Sample } from "@rarl/datasets";
import { Qwen2VLProcessor } from "@rarl/model";
import { BUILTIN_TEMPLATES, buildPrompt } from "@rarl/prompts";
import { readJsonl } from "../report/io";
import { demoModelConfig, writeRandomCheckpoint } from "./checkpoint";

/** A demo vocabulary step failed (bad tokenizer.json, a token the trimmed vocabulary cannot hold). */
export class DemoVocabError extends RarlError {}

/** GPT-2 byte-level alphabet: the 256 one-character tokens every byte maps to (the base of a byte-level BPE). */
export function byteLevelAlphabet(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  return out;
}

/** What {@link trimTokenizer} returns. */
export interface TrimmedTokenizer {
  /** The new tokenizer.json (same normalizer, pre-tokenizer, decoder; BPE vocab and merges cut down; ids renumbered). */
  json: Record<string, any>;
  /** Old id -> new id, for every kept token and every added (special) token. */
  idMap: Map<number, number>;
  /** Number of ids of the new tokenizer (BPE vocabulary + added tokens). */
  size: number;
}

/**
 * Cuts a byte-level BPE tokenizer.json down to the tokens in `keepIds`, plus the 256 byte tokens and every token a kept
 * token is merged from (so the result is a complete BPE: any text still encodes, as bytes at worst), plus every added
 * token. Kept tokens keep their relative order (new ids 0..n-1), added tokens follow; a merge survives when its two
 * parts and its result survive, in its original rank. Pure.
 *
 * Text whose pieces all came from `keepIds`' words is segmented exactly as by the full tokenizer: at each step BPE
 * applies the lowest-ranked applicable merge, and the merge the full tokenizer applies there produced a kept token,
 * so it survived.
 */
export function trimTokenizer(full: Record<string, any>, keepIds: Iterable<number>): TrimmedTokenizer {
  const model = full.model;
  if (model?.type !== "BPE" || typeof model.vocab !== "object" || !Array.isArray(model.merges)) {
    throw new DemoVocabError("tokenizer.json: expected a BPE model with vocab and merges", { code: "DEMO_BAD_TOKENIZER" });
  }
  const vocab = model.vocab as Record<string, number>;
  const byId = new Map<number, string>();
  for (const [tok, id] of Object.entries(vocab)) byId.set(id, tok);
  const pairs: Array<[string, string]> = (model.merges as Array<string | [string, string]>).map((m) => {
    if (Array.isArray(m)) return m;
    const i = m.indexOf(" ", 1);
    return [m.slice(0, i), m.slice(i + 1)];
  });
  const madeFrom = new Map<string, [string, string]>();
  for (const [a, b] of pairs) if (!madeFrom.has(a + b)) madeFrom.set(a + b, [a, b]);

  const kept = new Set<string>();
  const add = (tok: string) => {
    const stack = [tok];
    while (stack.length > 0) {
      const t = stack.pop() as string;
      if (kept.has(t)) continue;
      if (!(t in vocab)) throw new DemoVocabError(`tokenizer.json: merge part "${t}" is not in the vocabulary`, { code: "DEMO_BAD_TOKENIZER" });
      kept.add(t);
      const parts = madeFrom.get(t);
      if (parts && t.length > 1) stack.push(parts[0], parts[1]);
    }
  };
  for (const ch of byteLevelAlphabet()) add(ch);
  const added = (full.added_tokens ?? []) as Array<{ id: number; content: string }>;
  const addedIds = new Set(added.map((t) => t.id));
  for (const id of keepIds) {
    if (addedIds.has(id)) continue;
    const tok = byId.get(id);
    if (tok === undefined) throw new DemoVocabError(`token id ${id} is not in tokenizer.json's vocabulary`, { code: "DEMO_BAD_TOKENIZER" });
    add(tok);
  }

  const idMap = new Map<number, number>();
  const newVocab: Record<string, number> = {};
  const order = [...kept].sort((x, y) => vocab[x] - vocab[y]);
  order.forEach((tok, i) => {
    newVocab[tok] = i;
    idMap.set(vocab[tok], i);
  });
  const newMerges = pairs.filter(([a, b]) => kept.has(a) && kept.has(b) && kept.has(a + b)).map(([a, b]) => [a, b]);
  const newAdded = [...added].sort((x, y) => x.id - y.id).map((t, i) => {
    idMap.set(t.id, order.length + i);
    return { ...t, id: order.length + i };
  });
  const json = { ...full, added_tokens: newAdded, model: { ...model, vocab: newVocab, merges: newMerges } };
  return { json, idMap, size: order.length + newAdded.length };
}

/**
 * Every text the demo's model reads or writes, as the tokenizer sees it: each sample's prompt under every built-in
 * template (the training templates and the two inference prompts), rendered with the chat template, and its
 * `<think>…</think><answer>…</answer>` target.
 */
export function demoCorpus(processor: Qwen2VLProcessor, samples: Sample[]): string[] {
  const out: string[] = [];
  for (const s of samples) {
    for (const t of Object.values(BUILTIN_TEMPLATES)) out.push(processor.applyChatTemplate(buildPrompt(s, t), { addGenerationPrompt: true }));
    out.push(`<think>${s.reasoning ?? ""}</think><answer>${s.answer}</answer>`);
  }
  return out;
}

/** Config/generation-config keys that hold token ids. */
const ID_KEYS = ["bos_token_id", "eos_token_id", "pad_token_id", "image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id", "vision_token_id"];

function remapIds(obj: Record<string, unknown>, idMap: Map<number, number>, file: string): Record<string, unknown> {
  const out = { ...obj };
  const one = (v: unknown, key: string) => {
    if (typeof v !== "number") return v;
    const n = idMap.get(v);
    if (n === undefined) throw new DemoVocabError(`${file}: ${key} ${v} has no id in the trimmed vocabulary`, { code: "DEMO_BAD_TOKENIZER", details: { file, key } });
    return n;
  };
  for (const k of ID_KEYS) if (k in out) out[k] = Array.isArray(out[k]) ? (out[k] as unknown[]).map((v) => one(v, k)) : one(out[k], k);
  return out;
}

/**
 * Writes the demo's trimmed tokenizer into `dir` (tokenizer.json, tokenizer_config.json with renumbered
 * added_tokens_decoder, generation_config.json with renumbered ids; chat_template.json and preprocessor_config.json
 * copied) from the full Qwen2-VL tokenizer folder `srcDir`, keeping every token of `corpus`. Returns the new size and
 * the id map (for config.json).
 */
export async function writeTrimmedTokenizer(srcDir: string, dir: string, corpus: string[]): Promise<TrimmedTokenizer> {
  const processor = Qwen2VLProcessor.fromPretrained(srcDir);
  const keep = new Set<number>();
  for (const text of corpus) for (const id of await processor.tokenizer.encode(text)) keep.add(id);
  const file = path.join(srcDir, "tokenizer.json");
  const trimmed = trimTokenizer(JSON.parse(fs.readFileSync(file, "utf8")), keep);
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(path.join(dir, "tokenizer.json"), JSON.stringify(trimmed.json));
  const tc = JSON.parse(fs.readFileSync(path.join(srcDir, "tokenizer_config.json"), "utf8"));
  if (tc.added_tokens_decoder) {
    const dec: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(tc.added_tokens_decoder)) {
      const n = trimmed.idMap.get(Number(k));
      if (n === undefined) throw new DemoVocabError(`tokenizer_config.json: added token ${k} is not in tokenizer.json`, { code: "DEMO_BAD_TOKENIZER" });
      dec[String(n)] = v;
    }
    tc.added_tokens_decoder = dec;
  }
  writeFileAtomic(path.join(dir, "tokenizer_config.json"), `${JSON.stringify(tc, null, 2)}\n`);
  const gcFile = path.join(srcDir, "generation_config.json");
  if (fs.existsSync(gcFile)) {
    const gc = remapIds(JSON.parse(fs.readFileSync(gcFile, "utf8")), trimmed.idMap, gcFile);
    writeFileAtomic(path.join(dir, "generation_config.json"), `${JSON.stringify(gc, null, 2)}\n`);
  }
  for (const f of ["chat_template.json", "preprocessor_config.json"]) {
    const p = path.join(srcDir, f);
    if (fs.existsSync(p)) writeFileAtomic(path.join(dir, f), fs.readFileSync(p));
  }
  return trimmed;
}

/** config.json for a model over the trimmed vocabulary: vocab_size and every token-id field renumbered. */
export function configForTrimmedVocab(config: Record<string, unknown>, trimmed: TrimmedTokenizer): Record<string, unknown> {
  return { ...remapIds(config, trimmed.idMap, "config.json"), vocab_size: trimmed.size };
}

/**
 * The demo's model folder: the Qwen2-VL tokenizer of `tokenizerDir` cut down to the tokens of the samples in
 * `dataFile` (JSONL: their prompts under every built-in template and their targets; see {@link demoCorpus}), and
 * random weights (`seed`) of {@link demoModelConfig} over that vocabulary. Returns the trimmed tokenizer.
 */
export async function writeDemoModel(dir: string, tokenizerDir: string, dataFile: string, seed = 0): Promise<TrimmedTokenizer> {
  const samples = readJsonl<Sample>(dataFile);
  const trimmed = await writeTrimmedTokenizer(tokenizerDir, dir, demoCorpus(Qwen2VLProcessor.fromPretrained(tokenizerDir), samples));
  writeRandomCheckpoint(dir, configForTrimmedVocab(demoModelConfig(), trimmed), { seed });
  return trimmed;
}
