import path from "node:path";
import { extraOf, inferAnswerType, optText, parseAnswerType, reqText, asRecord, pick } from "../fields";
import { jsonArrayRows, readJsonFile, readJsonl, type RawRow } from "../io";
import { type Candidate, type FormatRows, rowCandidates } from "../pipeline";
import type { Sample } from "../types";
import { imageFrom, listFiles, noFiles, splitFromName, statPath, stripThink } from "./common";
import { DatasetError } from "../errors";

/**
 * The RARL reasoning-set format (JSON array or JSONL, one record per question):
 *
 * | field | required | meaning |
 * | --- | --- | --- |
 * | `image` (or `image_path`, `img_name`) | yes | image path relative to the file's folder |
 * | `question` | yes | the question |
 * | `reasoning` (or `reasoning_answer`, `explainable_answer`) | no | the reasoning answer; `<think>` tags are stripped |
 * | `answer` (or `short_answer`) | yes | the short answer |
 * | `modality` | no | "MRI", "CT", "X-ray", ... |
 * | `id` | no | unique id (default `rarl-<row>`, per file) |
 * | `answer_type` | no | closed/open/choice; inferred from yes/no answers when absent |
 * | `choices` | no | options for choice questions |
 * | `split` | no | default: from the file name (train/test) |
 *
 * Other fields go to `extra`.
 */
export const RARL_FIELDS = {
  image: ["image", "image_path", "img_name"],
  reasoning: ["reasoning", "reasoning_answer", "explainable_answer", "explanation"],
  answer: ["answer", "short_answer"],
} as const;

export function rarlFiles(p: string): string[] {
  if (!statPath(p)) return [p];
  const files = listFiles(p, /\.(jsonl|ndjson|json)$/i);
  if (!files.length) throw noFiles(p, ".json/.jsonl files");
  return files;
}

export function rowsOfJsonOrJsonl(file: string): AsyncIterable<RawRow> | Iterable<RawRow> {
  return /\.(jsonl|ndjson)$/i.test(file) ? readJsonl(file) : jsonArrayRows(file, readJsonFile(file));
}

export function rarlSample(value: unknown, file: string, row: number, multi: boolean, defaultSource = "rarl"): Sample {
  const at = { file, row };
  const rec = asRecord(value, at);
  const source = optText(rec, "source", at) ?? defaultSource;
  const imgHit = pick(rec, RARL_FIELDS.image);
  const image = imageFrom(imgHit?.[1], at, imgHit?.[0] ?? "image");
  const question = reqText(rec, "question", at);
  const answer = reqText(rec, RARL_FIELDS.answer, at);
  const reasoningRaw = optText(rec, RARL_FIELDS.reasoning, at);
  const at2 = optText(rec, "answer_type", at);
  let choices: string[] | undefined;
  if (rec.choices !== undefined && rec.choices !== null) {
    if (!Array.isArray(rec.choices) || rec.choices.some((c) => typeof c !== "string")) {
      throw new DatasetError(`field "choices" must be an array of strings`, { code: "DATASET_BAD_FIELD", ...at, details: { field: "choices" } });
    }
    choices = rec.choices as string[];
  }
  const answer_type = at2 ? parseAnswerType(at2, at) : choices ? "choice" : inferAnswerType(answer);
  const id = optText(rec, "id", at) ?? `${source}-${multi ? `${path.basename(file)}-` : ""}${row}`;
  const s: Sample = { id, image, question, answer, answer_type, source };
  if (reasoningRaw) s.reasoning = stripThink(reasoningRaw);
  if (choices) s.choices = choices;
  const modality = optText(rec, "modality", at);
  if (modality) s.modality = modality;
  const split = optText(rec, "split", at) ?? splitFromName(file);
  if (split) s.split = split;
  const rest = extraOf(rec, [
    "id",
    "source",
    "extra",
    "question",
    "answer_type",
    "choices",
    "modality",
    "split",
    ...RARL_FIELDS.image,
    ...RARL_FIELDS.reasoning,
    ...RARL_FIELDS.answer,
  ]);
  const base = rec.extra && typeof rec.extra === "object" && !Array.isArray(rec.extra) ? (rec.extra as Record<string, unknown>) : undefined;
  if (base || rest) s.extra = { ...(base ?? {}), ...(rest ?? {}) };
  return s;
}

export function loadRarl(opts: { path: string; root?: string }): FormatRows {
  const files = rarlFiles(opts.path);
  const root = opts.root ?? path.dirname(files[0]);
  async function* gen(): AsyncGenerator<Candidate> {
    for (const file of files) {
      for await (const r of rowsOfJsonOrJsonl(file)) {
        yield* rowCandidates(file, r, () => rarlSample(r.value, file, r.row, files.length > 1));
      }
    }
  }
  return { root, candidates: gen() };
}
