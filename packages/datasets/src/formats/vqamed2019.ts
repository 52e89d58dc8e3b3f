import fs from "node:fs";
import path from "node:path";
import { DatasetError } from "../errors";
import { readLines } from "../io";
import { checkRelativeImagePath, joinRel } from "../paths";
import { type Candidate, type FormatRows, tryBuild } from "../pipeline";
import type { Sample } from "../types";
import { isYesNo } from "../fields";
import { listFiles, noFiles, splitFromName, statPath } from "./common";

/** The four VQA-Med 2019 categories, and how the per-category file names spell them. */
const CATEGORY_FROM_FILE: Array<[RegExp, string]> = [
  [/C1_Modality/i, "modality"],
  [/C2_Plane/i, "plane"],
  [/C3_Organ/i, "organ"],
  [/C4_Abnormality/i, "abnormality"],
];

/**
 * VQA-Med 2019 (ImageCLEF), pipe-delimited text:
 * - `synpicID|category|question|answer` (the test file with reference answers),
 * - `synpicID|question|answer` (All_QA_Pairs_train/val.txt and the per-category C1..C4 files; the category
 *   then comes from the file name when it has one),
 * - `ImageID|Question` (test questions without answers: samples get answer "" and `extra.unanswered: true`).
 *
 * '#' separates alternative answers: `answer` keeps the first, `extra.alternatives` all of them.
 * Images are `<imageDir>/<id>.jpg`; imageDir defaults to the sibling folder whose name ends in "images"
 * (Train_images, Val_images, VQAMed2019_Test_Images). `path` is one file or a folder (then its
 * All_QA_Pairs_*.txt and *Test_Questions_w_Ref_Answers.txt files are read).
 */
export function loadVqaMed2019(opts: { path: string; root?: string; imageDir?: string }): FormatRows {
  let files: string[];
  if (statPath(opts.path)) {
    files = listFiles(opts.path, /^(All_QA_Pairs_.*|.*Test_Questions_w_Ref_Answers)\.txt$/i);
    if (!files.length) throw noFiles(opts.path, "VQA-Med 2019 QA files (All_QA_Pairs_*.txt, *_w_Ref_Answers.txt)");
  } else files = [opts.path];
  const root = opts.root ?? path.dirname(files[0]);
  const imgDirs = fs
    .readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && /images?$/i.test(e.name))
    .map((e) => e.name)
    .sort();
  const dirFor = (split: string | undefined): string => {
    if (opts.imageDir !== undefined) return opts.imageDir;
    const want = split === "train" ? /^train/i : split === "validation" ? /^val/i : split === "test" ? /test/i : /./;
    return imgDirs.find((d) => want.test(d)) ?? imgDirs[0] ?? "";
  };
  async function* gen(): AsyncGenerator<Candidate> {
    for (const file of files) {
      const split = splitFromName(file);
      const dir = dirFor(split);
      const fileCategory = CATEGORY_FROM_FILE.find(([re]) => re.test(path.basename(file)))?.[1];
      for await (const { row, line } of readLines(file)) {
        yield* tryBuild(file, row, () => {
          const at = { file, row };
          const cols = line.split("|").map((c) => c.trim());
          let id: string;
          let category: string | undefined = fileCategory;
          let question: string;
          let rawAnswer: string | undefined;
          if (cols.length === 4) [id, category, question, rawAnswer] = cols;
          else if (cols.length === 3) [id, question, rawAnswer] = cols;
          else if (cols.length === 2) [id, question] = cols;
          else {
            throw new DatasetError(`expected 2, 3 or 4 '|'-separated columns, got ${cols.length}`, { code: "DATASET_BAD_ROW", ...at });
          }
          const names = ["synpicID", "question", "answer"];
          for (const [k, v] of [
            [0, id],
            [1, question],
            [2, rawAnswer],
          ] as const) {
            if (v !== undefined && v === "") {
              throw new DatasetError(`missing required field "${names[k]}"`, { code: "DATASET_MISSING_FIELD", ...at, details: { field: names[k] } });
            }
          }
          const alternatives = rawAnswer?.split("#").map((a) => a.trim()).filter(Boolean);
          const answer = alternatives?.[0] ?? "";
          const s: Sample = {
            id: `vqa-med-2019-${split ?? "all"}-${id}-${category ?? row}`,
            image: { path: checkRelativeImagePath(joinRel(dir, /\.(jpe?g|png)$/i.test(id) ? id : `${id}.jpg`), at) },
            question,
            answer,
            answer_type: answer && isYesNo(answer) ? "closed" : "open",
            source: "vqa-med-2019",
          };
          if (split) s.split = split;
          const extra: Record<string, unknown> = { image_id: id };
          if (category) extra.category = category;
          if (alternatives && alternatives.length > 1) extra.alternatives = alternatives;
          if (rawAnswer === undefined) extra.unanswered = true;
          s.extra = extra;
          return s;
        });
      }
    }
  }
  return { root, candidates: gen() };
}
