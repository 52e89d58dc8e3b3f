// Property test: malformed rows fed to every loader end in a typed DatasetError or in a skip with a reason.
import fs from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { DatasetError } from "./errors";
import { type DatasetFormat, loadDataset } from "./load";
import { png, tmpDir, writeParquet, writeText } from "./test-helpers";

let PNG: Buffer;
beforeAll(async () => {
  PNG = await png(128);
});

/** A value that is often wrong for a field: missing, empty, wrong type, hostile path, or plausible. */
const nasty = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.constant(""),
  fc.constant("../escape.png"),
  fc.constant("/etc/passwd"),
  fc.constant("C:\\x.png"),
  fc.constant("missing.png"),
  fc.constant("img.png"),
  fc.constant("OPEN"),
  fc.constant("CLOSED"),
  fc.constant("(A)"),
  fc.integer(),
  fc.string({ maxLength: 8 }),
  fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** A record derived from a valid one: each field kept, dropped or replaced; sometimes not an object at all. */
function mutated(valid: Record<string, unknown>) {
  const keys = Object.keys(valid);
  return fc.oneof(
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    {
      weight: 5,
      arbitrary: fc.tuple(...keys.map(() => fc.tuple(fc.nat(2), nasty))).map((ch) => {
        const o: Record<string, unknown> = {};
        keys.forEach((k, i) => {
          const [mode, v] = ch[i];
          if (mode === 0) o[k] = valid[k];
          else if (mode === 1 && v !== undefined) o[k] = v;
        });
        return o;
      }),
    },
  );
}

interface Case {
  format: DatasetFormat;
  valid: Record<string, unknown>;
  /** Writes the rows in the published layout; returns the path to load. */
  write: (dir: string, rows: unknown[]) => string;
  /** True when one row can expand into several samples (Silvar-Med question lists). */
  expands?: boolean;
}

const jsonl = (file: string) => (dir: string, rows: unknown[]) => {
  writeText(path.join(dir, file), rows.map((r) => JSON.stringify(r) ?? "null").join("\n"));
  return path.join(dir, file);
};
const jsonArr = (file: string) => (dir: string, rows: unknown[]) => {
  writeText(path.join(dir, file), JSON.stringify(rows));
  return path.join(dir, file);
};
const str = (v: unknown) => (v === undefined || v === null ? null : typeof v === "string" ? v : JSON.stringify(v));

const cases: Case[] = [
  { format: "rarl", valid: { id: "a", image: "img.png", question: "q?", reasoning: "r", answer: "Yes", modality: "CT" }, write: jsonl("set.jsonl") },
  { format: "silvar-med", valid: { img_name: "img.png", question: "q?", answer: "Yes, because." }, write: jsonArr("silvar.json"), expands: true },
  {
    format: "vqa-rad",
    valid: { qid: 1, image_name: "img.png", image_organ: "HEAD", answer: "Yes", answer_type: "CLOSED", question_type: "PRES", question: "q?", phrase_type: "freeform" },
    write: jsonArr("VQA_RAD Dataset Public.json"),
  },
  {
    format: "slake",
    valid: { img_id: 1, img_name: "img.png", question: "q?", answer: "Yes", q_lang: "en", location: "Lung", modality: "CT", answer_type: "CLOSED", content_type: "Organ", qid: 1 },
    write: jsonArr("train.json"),
  },
  { format: "cv-bench", valid: { idx: 0, type: "2D", task: "Count", image: "img.png", question: "q?", choices: ["1", "2"], answer: "(A)", prompt: "p", source: "COCO" }, write: jsonl("test.jsonl") },
  { format: "jsonl", valid: { id: "a", image: "img.png", question: "q?", answer: "no", answer_type: "closed", source: "s" }, write: jsonl("x.jsonl") },
  { format: "json", valid: { id: "a", image: "img.png", question: "q?", answer: "no" }, write: jsonArr("x.json") },
  {
    format: "csv",
    valid: { id: "a", image: "img.png", question: "q?", answer: "no" },
    write: (dir, rows) => {
      const cols = ["id", "image", "question", "answer"];
      const q = (v: unknown) => {
        const s = str(v) ?? "";
        return `"${s.replace(/"/g, '""')}"`;
      };
      const lines = rows.map((r) => (r && typeof r === "object" && !Array.isArray(r) ? cols.map((c) => q((r as any)[c])).join(",") : q(r)));
      writeText(path.join(dir, "x.csv"), `${cols.join(",")}\n${lines.join("\n")}\n`);
      return path.join(dir, "x.csv");
    },
  },
  {
    format: "vqa-med-2019",
    valid: { id: "img", category: "organ", question: "q?", answer: "brain#head" },
    write: (dir, rows) => {
      const lines = rows.map((r) =>
        r && typeof r === "object" && !Array.isArray(r)
          ? Object.values(r)
              .map((v) => (str(v) ?? "").replace(/[\r\n]/g, " "))
              .join("|")
          : (str(r) ?? "").replace(/[\r\n]/g, " "),
      );
      writeText(path.join(dir, "All_QA_Pairs_train.txt"), `${lines.map((l) => (l.trim() ? l : "x")).join("\n")}\n`);
      return path.join(dir, "All_QA_Pairs_train.txt");
    },
  },
  {
    format: "pathvqa",
    valid: { image: "PNG", question: "q?", answer: "yes" },
    write: (dir, rows) => {
      const recs = rows.map((r) => (r && typeof r === "object" && !Array.isArray(r) ? (r as Record<string, unknown>) : {}));
      const image = recs.map((r) => {
        const v = r.image;
        if (v === "PNG") return { bytes: PNG, path: null };
        if (v === undefined || v === null) return null;
        if (typeof v === "string") return { bytes: null, path: v };
        return { bytes: new TextEncoder().encode(JSON.stringify(v)), path: null };
      });
      writeParquet(path.join(dir, "train-0.parquet"), [
        { name: "image", kind: "IMAGE", data: image },
        { name: "question", kind: "STRING", data: recs.map((r) => str(r.question)) },
        { name: "answer", kind: "STRING", data: recs.map((r) => str(r.answer)) },
      ]);
      return path.join(dir, "train-0.parquet");
    },
  },
];

describe("malformed rows (fast-check)", () => {
  for (const c of cases) {
    it(`${c.format}: every row is a sample, a skip with a reason, or a typed error`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(mutated(c.valid), { minLength: 1, maxLength: 5 }), async (rows) => {
          const dir = tmpDir("rarl-fc-");
          try {
            fs.writeFileSync(path.join(dir, "img.png"), PNG);
            const file = c.write(dir, rows);
            const skip = loadDataset({ format: c.format, path: file, onError: "skip" });
            let samples: unknown[] | undefined;
            try {
              samples = await skip.toArray();
            } catch (e) {
              // only whole-file problems may escape skip mode
              expect(e).toBeInstanceOf(DatasetError);
              expect((e as DatasetError).code).toBe("DATASET_BAD_FILE");
            }
            if (samples) {
              for (const s of skip.skipped) {
                expect(s.reason).toContain(`row ${s.row}`);
                expect(s.code).toMatch(/^DATASET_/);
              }
              const accounted = samples.length + skip.skipped.length + skip.filtered;
              if (c.expands) expect(accounted).toBeGreaterThanOrEqual(rows.length);
              else expect(accounted).toBe(rows.length);
            }
            try {
              await loadDataset({ format: c.format, path: file }).toArray();
            } catch (e) {
              expect(e).toBeInstanceOf(DatasetError);
              expect((e as DatasetError).message).toContain(file);
            }
          } finally {
            fs.rmSync(dir, { recursive: true, force: true });
          }
        }),
        { numRuns: 25, seed: 20260522 },
      );
    });
  }
});
