import path from "node:path";
import { asRecord, extraOf, optText, parseAnswerType, reqText } from "../fields";
import { jsonArrayRows, readJsonFile } from "../io";
import { type Candidate, type FormatRows, tryBuild } from "../pipeline";
import type { Sample } from "../types";
import { defaultImageDir, imageFrom, listFiles, noFiles, statPath } from "./common";

/** Folder names of the VQA-RAD image folder, tried in order when `imageDir` is not given. */
export const VQA_RAD_IMAGE_DIRS = ["VQA_RAD Image Folder", "images", "imgs"] as const;

/**
 * VQA-RAD, original release: `VQA_RAD Dataset Public.json` (an array of
 * `{qid, image_name, image_organ, answer, answer_type: OPEN|CLOSED, question_type, question, phrase_type, ...}`)
 * beside `VQA_RAD Image Folder/`. `path` is the JSON file or its folder. The split is "test" when
 * `phrase_type` starts with `test_` (test_freeform, test_para), else "train". id = `vqa-rad-<qid>`.
 * VQA-RAD has no modality field (image_organ and the rest go to `extra`).
 */
export function loadVqaRad(opts: { path: string; root?: string; imageDir?: string }): FormatRows {
  let file = opts.path;
  if (statPath(opts.path)) {
    const cands = listFiles(opts.path, /\.json$/i);
    const pub = cands.find((f) => /vqa_rad.*public/i.test(path.basename(f))) ?? (cands.length === 1 ? cands[0] : undefined);
    if (!pub) throw noFiles(opts.path, "VQA-RAD JSON file (VQA_RAD Dataset Public.json)");
    file = pub;
  }
  const root = opts.root ?? path.dirname(file);
  const imageDir = opts.imageDir ?? defaultImageDir(root, VQA_RAD_IMAGE_DIRS);
  async function* gen(): AsyncGenerator<Candidate> {
    for (const r of jsonArrayRows(file, readJsonFile(file))) {
      yield* tryBuild(file, r.row, () => {
        const at = { file, row: r.row };
        const rec = asRecord(r.value, at);
        const qid = reqText(rec, "qid", at);
        const s: Sample = {
          id: `vqa-rad-${qid}`,
          image: imageFrom(rec.image_name, at, "image_name", imageDir),
          question: reqText(rec, "question", at),
          answer: reqText(rec, "answer", at),
          answer_type: parseAnswerType(reqText(rec, "answer_type", at), at),
          source: "vqa-rad",
        };
        const phrase = optText(rec, "phrase_type", at);
        s.split = phrase && /^test/i.test(phrase) ? "test" : "train";
        const extra = extraOf(rec, ["image_name", "question", "answer", "answer_type"]);
        if (extra) s.extra = extra;
        return s;
      });
    }
  }
  return { root, candidates: gen() };
}
