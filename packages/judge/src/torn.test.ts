import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { captureLogs } from "@rarl/core";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JudgeCache } from "./cache";
import { readPredictions, readResults } from "./io";

// Issue 16 item 5, property: each file the judge writes or reads (results, cache, predictions from `rarl eval`),
// cut at every byte offset of its last record, is read with every whole record kept, the cut one ignored with a
// warning, and work goes on after it.

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-judge-torn-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// ASCII, 2-, 3- and 4-byte UTF-8 characters and JSON escapes: cuts fall inside characters and escapes too.
const text = fc.string({ unit: fc.constantFrom("a", "Z", " ", "é", "中", "😀", '"', "\\", "\n"), maxLength: 10 });
const score = fc.constantFrom(0, 1);
const result = fc.record({
  id: fc.uuid(),
  dataset: fc.constantFrom("Ours", "VQA-RAD", "SLAKE"),
  judge: fc.constant("openai:gpt-4o-mini"),
  reasoning_score: fc.option(score, { nil: null }),
  prediction_score: score,
  evaluation: text,
  status: fc.constant("scored"),
});
const prediction = fc.record({ id: fc.uuid(), dataset: fc.constant("SLAKE"), question: text, reference: text, prediction: text });
const cacheEntry = fc.record({
  key: fc.uuid(),
  status: fc.constant("scored"),
  verdict: fc.record({ evaluation: text, reasoning_score: fc.option(score, { nil: null }), prediction_score: score }),
});

/** Writes `recs` as JSONL cut at every byte offset of the last record; `check(file, whole, torn)` each time. */
function everyCut(recs: object[], check: (file: string, whole: number, torn: boolean) => void) {
  const file = path.join(dir, "f.jsonl");
  const head = Buffer.from(recs.slice(0, -1).map((r) => `${JSON.stringify(r)}\n`).join(""), "utf8");
  const last = Buffer.from(`${JSON.stringify(recs[recs.length - 1])}\n`, "utf8");
  for (let cut = 0; cut <= last.length; cut++) {
    fs.writeFileSync(file, Buffer.concat([head, last.subarray(0, cut)]));
    const complete = cut >= last.length - 1; // only the newline missing: the record is whole
    check(file, complete ? recs.length : recs.length - 1, cut > 0 && !complete);
  }
}

function warnings(fn: () => void): string[] {
  return captureLogs(fn).lines.filter((l) => l.includes("ignoring a torn last line"));
}

describe("judge files cut at every byte offset of their last record (fast-check)", () => {
  it("results: readResults keeps the whole rows and warns about a torn one", () => {
    fc.assert(
      fc.property(fc.array(result, { minLength: 1, maxLength: 2 }), (recs) => {
        everyCut(recs, (file, whole, torn) => {
          let rows: ReturnType<typeof readResults> = [];
          const w = warnings(() => {
            rows = readResults(file);
          });
          expect(rows.map((r) => r.id)).toEqual(recs.slice(0, whole).map((r) => r.id));
          expect(w.length).toBe(torn ? 1 : 0);
        });
      }),
      { numRuns: 5, seed: 161 },
    );
  });

  it("predictions (rarl eval's output): readPredictions keeps the whole rows and warns about a torn one", () => {
    fc.assert(
      fc.property(fc.array(prediction, { minLength: 2, maxLength: 2 }), (recs) => {
        everyCut(recs, (file, whole, torn) => {
          let rows: ReturnType<typeof readPredictions> = [];
          const w = warnings(() => {
            rows = readPredictions(file);
          });
          expect(rows).toEqual(recs.slice(0, whole));
          expect(w.length).toBe(torn ? 1 : 0);
        });
      }),
      { numRuns: 5, seed: 162 },
    );
  });

  it("cache: loads the whole entries, and an entry put afterwards reads back on a line of its own", () => {
    fc.assert(
      fc.property(fc.array(cacheEntry, { minLength: 1, maxLength: 2 }), cacheEntry, (recs, extra) => {
        const cacheDir = path.join(dir, "cache");
        everyCut(recs, (file, whole, torn) => {
          fs.rmSync(cacheDir, { recursive: true, force: true });
          fs.mkdirSync(cacheDir);
          fs.renameSync(file, path.join(cacheDir, "openai_m.jsonl"));
          let c!: JudgeCache;
          const w = warnings(() => {
            c = new JudgeCache(cacheDir, "openai:m");
          });
          expect(w.length).toBe(torn ? 1 : 0);
          expect(c.size).toBe(whole);
          c.put(extra as never);
          c.close();
          const again = new JudgeCache(cacheDir, "openai:m");
          expect(again.size).toBe(whole + 1);
          expect(again.get(extra.key)).toEqual(extra);
          for (const r of recs.slice(0, whole)) expect(again.get(r.key)).toEqual(r);
          again.close();
        });
      }),
      { numRuns: 4, seed: 163 },
    );
  });
});
