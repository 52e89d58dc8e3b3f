import path from "node:path";
import { DatasetError } from "../errors";
import { asRecord, extraOf, optText, type RowRef, scalarText } from "../fields";
import { jsonArrayRows, readJsonFile } from "../io";
import { type Candidate, type FormatRows, tryBuild } from "../pipeline";
import type { Sample } from "../types";
import { defaultImageDir, imageFrom, splitFromName, statPath, noFiles, listFiles } from "./common";

/**
 * Short answer from a Silvar-Med explanation: "Yes"/"No" when the explanation opens with yes/no
 * (as in the paper's Table 1: "Yes, the image appears abnormal ..."), otherwise its first sentence.
 */
export function shortAnswerFromExplanation(text: string): { answer: string; closed: boolean } {
  const t = text.replace(/<\/?think>/gi, "").trim();
  const m = t.match(/^(yes|no)\b/i);
  if (m) return { answer: m[1][0].toUpperCase() + m[1].slice(1).toLowerCase(), closed: true };
  const first = t.split(/(?<=[.!?])\s+/)[0] ?? t;
  return { answer: first.replace(/[.]+$/, ""), closed: false };
}

function textList(v: unknown, field: string, at: RowRef): string[] {
  const arr = Array.isArray(v) ? v : v === undefined || v === null ? [] : [v];
  if (arr.length === 0) {
    throw new DatasetError(`missing required field "${field}"`, { code: "DATASET_MISSING_FIELD", ...at, details: { field } });
  }
  return arr.map((x, i) => {
    const s = scalarText(x)?.trim();
    if (!s) {
      throw new DatasetError(`field "${field}"${Array.isArray(v) ? `[${i}]` : ""} must be non-empty text`, {
        code: Array.isArray(v) || typeof x !== "string" ? "DATASET_BAD_FIELD" : "DATASET_MISSING_FIELD",
        ...at,
        details: { field },
      });
    }
    return s;
  });
}

/**
 * Silvar-Med JSON importer: a JSON array of `{img_name, question, answer}` records, where `question` and
 * `answer` may each be a string or a list (a list of questions with a list of answers of the same length
 * gives one sample per pair). The Silvar-Med answer is the physician's explanation: it becomes `reasoning`,
 * and the short answer is derived with {@link shortAnswerFromExplanation} unless a `short_answer` field exists.
 * Optional `modality` per record (or `opts.modality` for all). Images: `<imageDir>/<img_name>`, where
 * imageDir defaults to `images/` or `imgs/` beside the JSON when such a folder exists.
 */
export function loadSilvarMed(opts: { path: string; root?: string; imageDir?: string; modality?: string }): FormatRows {
  const isDir = statPath(opts.path);
  const files = isDir ? listFiles(opts.path, /\.json$/i) : [opts.path];
  if (!files.length) throw noFiles(opts.path, ".json files");
  const root = opts.root ?? path.dirname(files[0]);
  const imageDir = opts.imageDir ?? defaultImageDir(root, ["images", "imgs", "image"]);
  async function* gen(): AsyncGenerator<Candidate> {
    for (const file of files) {
      for (const r of jsonArrayRows(file, readJsonFile(file))) {
        yield* tryBuild(file, r.row, () => {
          const at = { file, row: r.row };
          const rec = asRecord(r.value, at);
          const image = imageFrom(rec.img_name, at, "img_name", imageDir);
          const qs = textList(rec.question, "question", at);
          const as = textList(rec.answer, "answer", at);
          if (qs.length !== as.length) {
            throw new DatasetError(`"question" has ${qs.length} entries but "answer" has ${as.length}`, {
              code: "DATASET_BAD_FIELD",
              ...at,
              details: { field: "answer" },
            });
          }
          const shortGiven = optText(rec, "short_answer", at);
          const modality = optText(rec, "modality", at) ?? opts.modality;
          const split = optText(rec, "split", at) ?? splitFromName(file);
          const extra = extraOf(rec, ["img_name", "question", "answer", "short_answer", "modality", "split"]);
          return qs.map((question, k) => {
            const derived = shortAnswerFromExplanation(as[k]);
            const answer = qs.length === 1 && shortGiven ? shortGiven : derived.answer;
            const s: Sample = {
              id: `silvar-med-${files.length > 1 ? `${path.basename(file)}-` : ""}${r.row}${qs.length > 1 ? `-${k + 1}` : ""}`,
              image,
              question,
              answer,
              reasoning: as[k].replace(/<\/?think>/gi, "").trim(),
              answer_type: derived.closed || /^(yes|no)$/i.test(answer) ? "closed" : "open",
              source: "silvar-med",
            };
            if (modality) s.modality = modality;
            if (split) s.split = split;
            if (extra) s.extra = { ...extra };
            return s;
          });
        });
      }
    }
  }
  return { root, candidates: gen() };
}
