import path from "node:path";
import { DatasetError } from "../errors";
import { asRecord, extraOf, inferAnswerType, optText, parseAnswerType, reqText } from "../fields";
import { jsonArrayRows, readCsv, readJsonFile, readJsonl, type RawRow } from "../io";
import { type Candidate, type FormatRows, rowCandidates } from "../pipeline";
import type { Sample } from "../types";
import { imageFrom, splitFromName, statPath } from "./common";

/**
 * Which column holds each sample field, for the generic JSON/JSONL/CSV formats. Every entry defaults to
 * the field's own name (so a file written by `exportSamples` loads with no mapping).
 */
export interface ColumnMapping {
  /** Default "id"; when the column is absent, ids are `<source>-<row>`. */
  id?: string;
  /** Default "image": a relative path, `{path}`, or `{bytes: base64}`. Required. */
  image?: string;
  /** Default "question". Required. */
  question?: string;
  /** Default "answer". Required. */
  answer?: string;
  /** Default "reasoning". Optional. */
  reasoning?: string;
  /** Default "answer_type" (closed/open/choice, any case). Optional: inferred (choice when choices exist, closed for yes/no). */
  answer_type?: string;
  /** Default "choices": a JSON list, or in CSV a JSON list or a "|"-separated string. Optional. */
  choices?: string;
  /** Default "modality". Optional. */
  modality?: string;
  /** Default "split". Optional: from the file name when absent. */
  split?: string;
  /** Default "source". Optional: `opts.source` or "custom" when absent. */
  source?: string;
  /** Default "extra" (an object, merged into extra). Unmapped columns also go to extra. */
  extra?: string;
}

export type GenericKind = "json" | "jsonl" | "csv";

export function loadGeneric(
  opts: { path: string; root?: string; mapping?: ColumnMapping; source?: string; delimiter?: string },
  kind: GenericKind,
): FormatRows {
  if (statPath(opts.path)) {
    throw new DatasetError(`the ${kind} format takes one file, not a directory`, { code: "DATASET_BAD_OPTIONS", file: opts.path });
  }
  const file = opts.path;
  const root = opts.root ?? path.dirname(file);
  const m = opts.mapping ?? {};
  const col = (k: keyof ColumnMapping) => m[k] ?? k;
  const rows = (): AsyncIterable<RawRow> | Iterable<RawRow> =>
    kind === "jsonl" ? readJsonl(file) : kind === "csv" ? readCsv(file, opts.delimiter) : jsonArrayRows(file, readJsonFile(file));
  const fileSplit = splitFromName(file);
  async function* gen(): AsyncGenerator<Candidate> {
    for await (const r of rows()) {
      yield* rowCandidates(file, r, (at) => {
        const rec = asRecord(r.value, at);
        const source = optText(rec, col("source"), at) ?? opts.source ?? "custom";
        const answer = reqText(rec, col("answer"), at);
        let choices: string[] | undefined;
        const cv = rec[col("choices")];
        if (cv !== undefined && cv !== null && cv !== "") {
          let arr: unknown = cv;
          if (typeof cv === "string") {
            try {
              arr = cv.trim().startsWith("[") ? JSON.parse(cv) : cv.split("|").map((x) => x.trim());
            } catch {
              arr = undefined;
            }
          }
          if (!Array.isArray(arr) || arr.some((x) => typeof x !== "string")) {
            throw new DatasetError(`field "${col("choices")}" must be a list of strings`, {
              code: "DATASET_BAD_FIELD",
              ...at,
              details: { field: col("choices") },
            });
          }
          choices = arr as string[];
        }
        const atText = optText(rec, col("answer_type"), at);
        const s: Sample = {
          id: optText(rec, col("id"), at) ?? `${source}-${r.row}`,
          image: imageFrom(rec[col("image")], at, col("image")),
          question: reqText(rec, col("question"), at),
          answer,
          answer_type: atText ? parseAnswerType(atText, at, col("answer_type")) : choices ? "choice" : inferAnswerType(answer),
          source,
        };
        if (choices) s.choices = choices;
        const reasoning = optText(rec, col("reasoning"), at);
        if (reasoning) s.reasoning = reasoning;
        const modality = optText(rec, col("modality"), at);
        if (modality) s.modality = modality;
        const split = optText(rec, col("split"), at) ?? fileSplit;
        if (split) s.split = split;
        const ex = rec[col("extra")];
        const used = (Object.keys({ ...m, id: 1, image: 1, question: 1, answer: 1, reasoning: 1, answer_type: 1, choices: 1, modality: 1, split: 1, source: 1, extra: 1 }) as Array<
          keyof ColumnMapping
        >).map(col);
        const rest = extraOf(rec, used);
        const base = ex && typeof ex === "object" && !Array.isArray(ex) ? (ex as Record<string, unknown>) : undefined;
        if (base || rest) s.extra = { ...(base ?? {}), ...(rest ?? {}) };
        return s;
      });
    }
  }
  return { root, candidates: gen() };
}
