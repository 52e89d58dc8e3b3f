import fs from "node:fs";
import { completeJsonlLines, JsonlWriter } from "@rarl/core";
import { JudgeInputError } from "./errors";
import type { PredictionRecord, ResultRecord } from "./types";

/** One problem found in an input file, for errors that list them all. */
export interface InputProblem {
  line: number;
  code: string;
  message: string;
}

/**
 * Calls `onRow` for every JSON object line. A torn last line (text after the last newline that is not JSON: a write
 * cut off by a crash) is ignored with a warning. Any other bad line throws a JudgeInputError naming the file and
 * line, or, when `problems` is given, is recorded there and skipped so that the caller can report every bad line.
 */
function parseLines(file: string, text: string, onRow: (v: any, line: number) => void, problems?: InputProblem[]) {
  const lines = completeJsonlLines(file, text);
  const bad = (line: number, code: string, message: string) => {
    if (!problems) throw new JudgeInputError(message, { code, details: { file, line } });
    problems.push({ line, code, message });
  };
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (raw === "") continue;
    let v: any;
    try {
      v = JSON.parse(raw);
    } catch {
      bad(i + 1, "JUDGE_BAD_JSON", `${file}:${i + 1}: not valid JSON`);
      continue;
    }
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      bad(i + 1, "JUDGE_BAD_ROW", `${file}:${i + 1}: expected a JSON object`);
      continue;
    }
    onRow(v, i + 1);
  }
}

/** Most problems listed in one error message (all of them are in `details.problems`). */
const MAX_LISTED = 200;

/** One JudgeInputError listing every problem (sorted by line); its code and `details.line` are the first problem's. */
function problemsError(file: string, problems: InputProblem[]): JudgeInputError {
  const sorted = [...problems].sort((a, b) => a.line - b.line);
  const first = sorted[0];
  const listed = sorted.slice(0, MAX_LISTED).map((p) => p.message);
  if (sorted.length > MAX_LISTED) listed.push(`... and ${sorted.length - MAX_LISTED} more`);
  const head = sorted.length === 1 ? "" : `${file}: ${sorted.length} problems:\n  `;
  return new JudgeInputError(`${head}${listed.join("\n  ")}`, { code: first.code, details: { file, line: first.line, problems: sorted } });
}

const REQUIRED = ["id", "dataset", "question", "reference", "prediction"] as const;
const OPTIONAL = ["reference_reasoning", "prediction_reasoning"] as const;

/**
 * Validates predictions (parsed rows with their line numbers): every required field present
 * (id a string or number, the rest strings), optional reasoning fields strings, ids unique.
 * Throws one {@link JudgeInputError} listing every problem with its file and line (`details.problems`).
 */
export function validatePredictions(file: string, rows: Array<{ value: any; line: number }>, earlier: InputProblem[] = []): PredictionRecord[] {
  const problems: InputProblem[] = [...earlier];
  const records = collectPredictions(file, rows, problems);
  if (problems.length) throw problemsError(file, problems);
  return records;
}

function collectPredictions(file: string, rows: Array<{ value: any; line: number }>, problems: InputProblem[]): PredictionRecord[] {
  const seen = new Map<string, number>();
  const out: PredictionRecord[] = [];
  for (const { value: v, line } of rows) {
    const before = problems.length;
    for (const f of REQUIRED) {
      const x = v[f];
      const ok = f === "id" ? typeof x === "string" || typeof x === "number" : typeof x === "string";
      if (x === undefined || x === null) {
        problems.push({ line, code: "JUDGE_MISSING_FIELD", message: `${file}:${line}: missing field "${f}" (expected ${f === "id" ? "a string or number" : "a string"})` });
      } else if (!ok) {
        problems.push({ line, code: "JUDGE_BAD_FIELD", message: `${file}:${line}: field "${f}" must be ${f === "id" ? "a string or number" : "a string"}, got ${typeof x}` });
      }
    }
    for (const f of OPTIONAL) {
      if (v[f] !== undefined && v[f] !== null && typeof v[f] !== "string") {
        problems.push({ line, code: "JUDGE_BAD_FIELD", message: `${file}:${line}: field "${f}" must be a string when present, got ${typeof v[f]}` });
      }
    }
    if (typeof v.id === "string" || typeof v.id === "number") {
      const id = String(v.id);
      const prev = seen.get(id);
      if (prev !== undefined) problems.push({ line, code: "JUDGE_DUPLICATE_ID", message: `${file}:${line}: duplicate id "${id}" (first seen on line ${prev})` });
      else seen.set(id, line);
    }
    if (problems.length > before) continue;
    const id = String(v.id);
    const rec: PredictionRecord = { id, dataset: v.dataset, question: v.question, reference: v.reference, prediction: v.prediction };
    if (typeof v.reference_reasoning === "string") rec.reference_reasoning = v.reference_reasoning;
    if (typeof v.prediction_reasoning === "string") rec.prediction_reasoning = v.prediction_reasoning;
    out.push(rec);
  }
  return out;
}

/** Reads and validates a predictions JSONL file ({@link PredictionRecord} per line); a torn last line is ignored with a warning. */
export function readPredictions(file: string): PredictionRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e: any) {
    throw new JudgeInputError(`cannot read predictions file ${file}: ${e?.code ?? e}`, { code: "JUDGE_NO_FILE", details: { file }, cause: e });
  }
  const rows: Array<{ value: any; line: number }> = [];
  const problems: InputProblem[] = [];
  parseLines(file, text, (value, line) => rows.push({ value, line }), problems);
  if (rows.length === 0 && problems.length === 0) throw new JudgeInputError(`${file}: no predictions`, { code: "JUDGE_EMPTY", details: { file } });
  return validatePredictions(file, rows, problems);
}

/** Reads a results JSONL file. A torn last line (crash while writing) is ignored with a warning. */
export function readResults(file: string): ResultRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e: any) {
    throw new JudgeInputError(`cannot read results file ${file}: ${e?.code ?? e}`, { code: "JUDGE_NO_FILE", details: { file }, cause: e });
  }
  const out: ResultRecord[] = [];
  parseLines(
    file,
    text,
    (v, line) => {
      for (const f of ["id", "dataset", "judge", "status"]) {
        if (v[f] === undefined || v[f] === null) {
          throw new JudgeInputError(`${file}:${line}: missing field "${f}" in a results row`, { code: "JUDGE_MISSING_FIELD", details: { file, line, field: f } });
        }
      }
      for (const f of ["reasoning_score", "prediction_score"]) {
        if (![0, 1, null, undefined].includes(v[f])) {
          throw new JudgeInputError(`${file}:${line}: field "${f}" must be 0, 1 or null`, { code: "JUDGE_BAD_FIELD", details: { file, line, field: f } });
        }
      }
      out.push({ ...v, id: String(v.id), reasoning_score: v.reasoning_score ?? null, prediction_score: v.prediction_score ?? null });
    },
  );
  return out;
}

/** Human labels: {id, reasoning_score?, prediction_score?, dataset?} per line. */
export interface HumanLabel {
  id: string;
  dataset?: string;
  reasoning_score: 0 | 1 | null;
  prediction_score: 0 | 1 | null;
}

/** Reads a human-labels JSONL file. */
export function readHumanLabels(file: string): HumanLabel[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e: any) {
    throw new JudgeInputError(`cannot read labels file ${file}: ${e?.code ?? e}`, { code: "JUDGE_NO_FILE", details: { file }, cause: e });
  }
  const out: HumanLabel[] = [];
  const seen = new Set<string>();
  parseLines(file, text, (v, line) => {
    if (v.id === undefined || v.id === null) throw new JudgeInputError(`${file}:${line}: missing field "id"`, { code: "JUDGE_MISSING_FIELD", details: { file, line, field: "id" } });
    for (const f of ["reasoning_score", "prediction_score"]) {
      if (![0, 1, null, undefined].includes(v[f])) {
        throw new JudgeInputError(`${file}:${line}: field "${f}" must be 0, 1 or null`, { code: "JUDGE_BAD_FIELD", details: { file, line, field: f } });
      }
    }
    const id = String(v.id);
    if (seen.has(id)) throw new JudgeInputError(`${file}:${line}: duplicate id "${id}"`, { code: "JUDGE_DUPLICATE_ID", details: { file, line, id } });
    seen.add(id);
    out.push({ id, dataset: typeof v.dataset === "string" ? v.dataset : undefined, reasoning_score: v.reasoning_score ?? null, prediction_score: v.prediction_score ?? null });
  });
  return out;
}

/**
 * Append-only JSONL writer: each record is one `write` of a whole line on an O_APPEND descriptor, handed to the
 * OS as it arrives (a killed process loses nothing already written, and leaves at most a torn last line).
 * @rarl/core's JsonlWriter under its former name.
 */
export class JsonlAppender extends JsonlWriter {}
