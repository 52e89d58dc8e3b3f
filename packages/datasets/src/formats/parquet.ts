import path from "node:path";
import { DatasetError } from "../errors";
import { asRecord, extraOf, inferAnswerType, optText, reqText } from "../fields";
import { readJsonl, readParquet } from "../io";
import { type Candidate, type FormatRows, rowCandidates, tryBuild } from "../pipeline";
import type { Sample } from "../types";
import { imageFrom, listFiles, noFiles, splitFromName, statPath } from "./common";

function parquetFiles(p: string): string[] {
  if (!statPath(p)) return [p];
  const files = listFiles(p, /\.parquet$/i, true);
  if (!files.length) throw noFiles(p, ".parquet files");
  return files;
}

function splitOf(file: string): string | undefined {
  return splitFromName(file) ?? splitFromName(path.basename(path.dirname(file)));
}

/**
 * Hugging Face parquet VQA sets with columns `image` (struct {bytes, path}), `question`, `answer`:
 * `flaviagiammarino/vqa-rad` (source "vqa-rad") and `flaviagiammarino/path-vqa` (source "pathvqa").
 * They publish no answer type: it is "closed" for yes/no answers and "open" otherwise. The split comes
 * from the file name (`train-00000-of-00001.parquet`). `path` is a parquet file or a folder (searched
 * recursively). id = `<source>-<file stem>-<row>`.
 */
export function loadHfVqaParquet(opts: { path: string; root?: string }, source: string): FormatRows {
  const files = parquetFiles(opts.path);
  const root = opts.root ?? (statPath(opts.path) ? opts.path : path.dirname(opts.path));
  async function* gen(): AsyncGenerator<Candidate> {
    for (const file of files) {
      const split = splitOf(file);
      const stem = path.basename(file, ".parquet");
      for await (const r of readParquet(file)) {
        yield* tryBuild(file, r.row, () => {
          const at = { file, row: r.row };
          const rec = asRecord(r.value, at);
          const answer = reqText(rec, "answer", at);
          const s: Sample = {
            id: `${source}-${stem}-${r.row}`,
            image: imageFrom(rec.image, at, "image"),
            question: reqText(rec, "question", at),
            answer,
            answer_type: inferAnswerType(answer),
            source,
          };
          if (split) s.split = split;
          const extra = extraOf(rec, ["image", "question", "answer"]);
          if (extra) s.extra = extra;
          return s;
        });
      }
    }
  }
  return { root, candidates: gen() };
}

/** The CV-Bench sources the official score averages over. */
export type CvBenchSource = "ADE20K" | "COCO" | "Omni3D";

/** Letter of a CV-Bench answer like "(A)" -> "A". */
export function choiceLetter(answer: string): string | undefined {
  const m = answer.trim().match(/^\(?([A-Za-z])\)?$/);
  return m ? m[1].toUpperCase() : undefined;
}

/**
 * CV-Bench (nyu-visionx/CV-Bench): parquet or JSONL with `idx, type (2D|3D), task, image, question,
 * choices, answer ("(A)"), prompt, source (ADE20K|COCO|Omni3D), ...`. In parquet, `image` is the
 * {bytes, path} struct; in JSONL it is a path relative to the file's folder (`filename` is used when
 * `image` is absent). answer_type is "choice"; `answer` stays as published ("(A)"), `extra.answer_letter`
 * and `extra.answer_text` give the letter and the option text. id = `cv-bench-<idx>`.
 */
export function loadCvBench(opts: { path: string; root?: string }): FormatRows {
  let files: string[];
  if (statPath(opts.path)) {
    files = listFiles(opts.path, /\.parquet$/i, true);
    if (!files.length) files = listFiles(opts.path, /\.jsonl$/i);
    if (!files.length) throw noFiles(opts.path, "CV-Bench .parquet or .jsonl files");
  } else files = [opts.path];
  const root = opts.root ?? (statPath(opts.path) ? opts.path : path.dirname(opts.path));
  async function* gen(): AsyncGenerator<Candidate> {
    for (const file of files) {
      const rows = /\.parquet$/i.test(file) ? readParquet(file) : readJsonl(file);
      for await (const r of rows) {
        yield* rowCandidates(file, r, (at) => {
          const rec = asRecord(r.value, at);
          const idx = reqText(rec, "idx", at);
          const choices = rec.choices;
          if (!Array.isArray(choices) || choices.length < 2 || choices.some((c) => typeof c !== "string" && typeof c !== "number")) {
            throw new DatasetError(`field "choices" must be a list of at least two options`, {
              code: choices === undefined || choices === null ? "DATASET_MISSING_FIELD" : "DATASET_BAD_FIELD",
              ...at,
              details: { field: "choices" },
            });
          }
          const opts2 = choices.map(String);
          const answer = reqText(rec, "answer", at);
          const letter = choiceLetter(answer);
          const k = letter ? letter.charCodeAt(0) - 65 : -1;
          if (k < 0 || k >= opts2.length) {
            throw new DatasetError(`answer ${JSON.stringify(answer)} is not an option letter among ${opts2.length} choices`, {
              code: "DATASET_BAD_FIELD",
              ...at,
              details: { field: "answer" },
            });
          }
          const imgField = rec.image !== undefined && rec.image !== null ? "image" : "filename";
          const s: Sample = {
            id: `cv-bench-${idx}`,
            image: imageFrom(rec[imgField], at, imgField),
            question: reqText(rec, "question", at),
            answer,
            answer_type: "choice",
            choices: opts2,
            source: "cv-bench",
            split: "test",
          };
          const extra = extraOf(rec, ["image", "question", "answer", "choices"]) ?? {};
          extra.answer_letter = letter;
          extra.answer_text = opts2[k];
          const src = optText(rec, "source", at);
          if (src) extra.source = src;
          s.extra = extra;
          return s;
        });
      }
    }
  }
  return { root, candidates: gen() };
}

/** One graded CV-Bench answer. */
export interface CvBenchResult {
  /** The sample's `source` column: ADE20K, COCO or Omni3D. */
  source: string;
  /** Whether the prediction matched. */
  correct: boolean;
}

/** CV-Bench accuracies and the official combined score. */
export interface CvBenchScore {
  ade20k: number;
  coco: number;
  omni3d: number;
  /** (ADE20K + COCO) / 2. */
  accuracy2d: number;
  /** Omni3D. */
  accuracy3d: number;
  /** ½ · ((ADE20K + COCO)/2 + Omni3D), the official CV-Bench score. */
  overall: number;
  /** Graded items per source. */
  counts: Record<CvBenchSource, number>;
}

/**
 * The official CV-Bench score ½·((ADE20K + COCO)/2 + Omni3D), each term the accuracy over that source.
 * Throws DATASET_BAD_OPTIONS when a source has no graded item (the score would be undefined) or a
 * result names an unknown source.
 */
export function cvBenchScore(results: Iterable<CvBenchResult>): CvBenchScore {
  const tot: Record<CvBenchSource, number> = { ADE20K: 0, COCO: 0, Omni3D: 0 };
  const ok: Record<CvBenchSource, number> = { ADE20K: 0, COCO: 0, Omni3D: 0 };
  const norm: Record<string, CvBenchSource> = { ade20k: "ADE20K", coco: "COCO", omni3d: "Omni3D" };
  for (const r of results) {
    const s = norm[r.source.toLowerCase()];
    if (!s) throw new DatasetError(`unknown CV-Bench source ${JSON.stringify(r.source)} (expected ADE20K, COCO or Omni3D)`, { code: "DATASET_BAD_OPTIONS" });
    tot[s]++;
    if (r.correct) ok[s]++;
  }
  for (const s of Object.keys(tot) as CvBenchSource[]) {
    if (tot[s] === 0) throw new DatasetError(`no CV-Bench results from ${s}: the official score needs all three sources`, { code: "DATASET_BAD_OPTIONS" });
  }
  const ade20k = ok.ADE20K / tot.ADE20K;
  const coco = ok.COCO / tot.COCO;
  const omni3d = ok.Omni3D / tot.Omni3D;
  const accuracy2d = (ade20k + coco) / 2;
  return { ade20k, coco, omni3d, accuracy2d, accuracy3d: omni3d, overall: (accuracy2d + omni3d) / 2, counts: tot };
}
