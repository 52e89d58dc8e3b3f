import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "@rarl/core";
import Ajv from "ajv";
import { buildRewards, loadRewardConfig, type RewardConfig, type RewardSet } from "./config";
import { RewardInputError } from "./errors";
import type { RewardRegistry } from "./registry";
import type { RewardSample } from "./types";

/** One input line of scoreFile. Other keys are kept and passed through to the output. */
export interface CompletionLine {
  id: string | number;
  completion: string;
  answer: string;
  reasoning?: string | null;
  answer_type: "closed" | "open" | "choice";
  choices?: string[] | null;
  [extra: string]: unknown;
}

/** An output line: the input plus every component's value (`rewards`) and the weighted sum (`total`). */
export type ScoredLine = CompletionLine & { rewards: Record<string, number>; total: number };

const LINE_SCHEMA = {
  type: "object",
  required: ["id", "completion", "answer", "answer_type"],
  properties: {
    id: { type: ["string", "number"] },
    completion: { type: "string" },
    answer: { type: "string" },
    reasoning: { type: ["string", "null"] },
    answer_type: { enum: ["closed", "open", "choice"] },
    choices: { anyOf: [{ type: "array", items: { type: "string" } }, { type: "null" }] },
  },
};
const validateLine = new Ajv({ allErrors: false, strict: false }).compile(LINE_SCHEMA);

/** Parses and validates a completions JSONL file (blank lines skipped). Errors name the file and the 1-based line. */
export function readCompletions(file: string): CompletionLine[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new RewardInputError(`${file}: cannot read: ${(e as Error).message}`, { code: "REWARD_INPUT_IO", details: { file }, cause: e });
  }
  const out: CompletionLine[] = [];
  text.split("\n").forEach((raw, i) => {
    if (raw.trim().length === 0) return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new RewardInputError(`${file}:${i + 1}: invalid JSON: ${(e as Error).message}`, { code: "REWARD_INPUT_INVALID", details: { file, line: i + 1 }, cause: e });
    }
    if (!validateLine(v)) {
      const e = validateLine.errors?.[0];
      const where = e?.keyword === "required" ? String(e.params.missingProperty) : (e?.instancePath.replace(/^\//, "").replace(/\//g, ".") ?? "");
      throw new RewardInputError(`${file}:${i + 1}: field "${where}" ${e?.keyword === "required" ? "is required" : e?.message} (expected {id, completion, answer, reasoning?, answer_type: closed|open|choice, choices?})`, {
        code: "REWARD_INPUT_INVALID",
        details: { file, line: i + 1, field: where },
      });
    }
    out.push(v as CompletionLine);
  });
  return out;
}

/** Options of scoreFile. */
export interface ScoreFileOptions {
  /** Registry for reward names (default: built-ins). */
  registry?: RewardRegistry;
  /** Lines scored together (one BERTScore batch). Default 64. */
  chunkSize?: number;
  /** Called after each chunk with the number of lines done. */
  onProgress?: (done: number, total: number) => void;
}

/** Summary returned by scoreFile. */
export interface ScoreFileResult {
  lines: ScoredLine[];
  /** Mean of each component and of the total. */
  mean: Record<string, number>;
}

/**
 * Scores an existing completions file offline: `config` (a path to a rewards JSON config, or a config object whose
 * relative paths resolve from the current directory), `input` (JSONL of {id, completion, answer, reasoning?,
 * answer_type, choices?}), `out` (optional JSONL path, written atomically). Each output line is the input line plus
 * `rewards` (every component's value) and `total` (weighted sum).
 */
export async function scoreFile(config: string | RewardConfig, input: string, out?: string, opts: ScoreFileOptions = {}): Promise<ScoreFileResult> {
  const { config: cfg, baseDir } = typeof config === "string" ? loadRewardConfig(config) : { config, baseDir: process.cwd() };
  const lines = readCompletions(path.resolve(input));
  const set: RewardSet = await buildRewards(cfg, {
    baseDir,
    registry: opts.registry,
    idfCorpus: {
      answers: lines.map((l) => l.answer),
      reasonings: lines.map((l) => l.reasoning).filter((r): r is string => typeof r === "string" && r.trim().length > 0),
    },
  });
  const scored: ScoredLine[] = [];
  try {
    const chunk = opts.chunkSize ?? 64;
    for (let s = 0; s < lines.length; s += chunk) {
      const part = lines.slice(s, s + chunk);
      const res = await set.composite.scoreBatch(
        part.map((l) => ({ completion: l.completion, sample: toSample(l) })),
        set.ctx,
      );
      part.forEach((l, k) => {
        scored.push({ ...l, rewards: res[k].components, total: res[k].total });
      });
      opts.onProgress?.(Math.min(s + chunk, lines.length), lines.length);
    }
  } finally {
    set.dispose();
  }
  if (out) writeFileAtomic(path.resolve(out), scored.map((l) => JSON.stringify(l)).join("\n") + (scored.length ? "\n" : ""));
  const mean: Record<string, number> = {};
  for (const c of set.composite.components) mean[c.name] = avg(scored.map((l) => l.rewards[c.name]));
  mean.total = avg(scored.map((l) => l.total));
  return { lines: scored, mean };
}

function avg(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

function toSample(l: CompletionLine): RewardSample {
  return { id: String(l.id), answer: l.answer, reasoning: l.reasoning ?? undefined, answer_type: l.answer_type, choices: l.choices ?? undefined };
}
