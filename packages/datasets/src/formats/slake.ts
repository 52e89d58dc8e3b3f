import path from "node:path";
import { asRecord, extraOf, optText, parseAnswerType, reqText } from "../fields";
import { jsonArrayRows, readJsonFile } from "../io";
import { type Candidate, type FormatRows, tryBuild } from "../pipeline";
import type { Sample } from "../types";
import { defaultImageDir, imageFrom, listFiles, noFiles, splitFromName, statPath } from "./common";

/**
 * SLAKE: `train.json`, `validation.json`, `test.json` (arrays of `{img_id, img_name, question, answer,
 * q_lang, location, modality, answer_type: OPEN|CLOSED, base_type, content_type, triple, qid}`) beside
 * `imgs/` (img_name is like `xmlab102/source.jpg`). `path` is the folder or one of the JSON files.
 * English only by default (`languages: ["en"]`); rows in other languages are counted in `filtered`.
 * id = `slake-<split>-<qid>`.
 */
export function loadSlake(opts: { path: string; root?: string; imageDir?: string; languages?: readonly string[] | "all" }): FormatRows {
  let files: string[];
  if (statPath(opts.path)) {
    files = listFiles(opts.path, /^(train|validation|validate|valid|val|test)\.json$/i);
    const order = ["train", "validation", "test"];
    files.sort((a, b) => order.indexOf(splitFromName(a) ?? "") - order.indexOf(splitFromName(b) ?? ""));
    if (!files.length) throw noFiles(opts.path, "SLAKE split files (train.json, validation.json, test.json)");
  } else files = [opts.path];
  const root = opts.root ?? path.dirname(files[0]);
  const imageDir = opts.imageDir ?? defaultImageDir(root, ["imgs", "images"]);
  const langs = opts.languages ?? ["en"];
  let filtered = 0;
  async function* gen(): AsyncGenerator<Candidate> {
    filtered = 0;
    for (const file of files) {
      const split = splitFromName(file);
      for (const r of jsonArrayRows(file, readJsonFile(file))) {
        const at = { file, row: r.row };
        if (langs !== "all" && r.value && typeof r.value === "object") {
          const lang = (r.value as Record<string, unknown>).q_lang;
          if (typeof lang === "string" && !langs.includes(lang)) {
            filtered++;
            continue;
          }
        }
        yield* tryBuild(file, r.row, () => {
          const rec = asRecord(r.value, at);
          const qid = optText(rec, "qid", at) ?? String(r.row);
          const s: Sample = {
            id: `slake-${split ?? path.basename(file, ".json")}-${qid}`,
            image: imageFrom(rec.img_name, at, "img_name", imageDir),
            question: reqText(rec, "question", at),
            answer: reqText(rec, "answer", at),
            answer_type: parseAnswerType(reqText(rec, "answer_type", at), at),
            source: "slake",
          };
          const modality = optText(rec, "modality", at);
          if (modality) s.modality = modality;
          if (split) s.split = split;
          const extra = extraOf(rec, ["img_name", "question", "answer", "answer_type", "modality"]);
          if (extra) s.extra = extra;
          return s;
        });
      }
    }
  }
  return { root, candidates: gen(), filtered: () => filtered };
}
