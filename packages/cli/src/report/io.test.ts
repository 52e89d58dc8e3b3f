import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { captureLogs } from "@rarl/core";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ReportInputError, readJsonl } from "./io";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-report-io-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("readJsonl (the report's reader of metrics.jsonl, samples.jsonl and judge results)", () => {
  it("property: cut at every byte offset of the last record, keeps the whole records and warns about a torn one", () => {
    const rec = fc.record({ step: fc.nat(), loss: fc.double({ noNaN: true, noDefaultInfinity: true }), text: fc.string({ unit: fc.constantFrom("a", "é", "中", "😀", '"', "\\"), maxLength: 8 }) });
    fc.assert(
      fc.property(fc.array(rec, { minLength: 1, maxLength: 3 }), (recs) => {
        const file = path.join(dir, "m.jsonl");
        const head = Buffer.from(recs.slice(0, -1).map((r) => `${JSON.stringify(r)}\n`).join(""), "utf8");
        const last = Buffer.from(`${JSON.stringify(recs[recs.length - 1])}\n`, "utf8");
        for (let cut = 0; cut <= last.length; cut++) {
          fs.writeFileSync(file, Buffer.concat([head, last.subarray(0, cut)]));
          const whole = cut >= last.length - 1 ? recs.length : recs.length - 1;
          const { value, lines: logs } = captureLogs(() => readJsonl(file));
          expect(value).toEqual(recs.slice(0, whole));
          expect(logs.length).toBe(cut > 0 && whole < recs.length ? 1 : 0);
        }
      }),
      { numRuns: 6, seed: 165 },
    );
  });

  it("a bad line that is not the last, or a last line ending in a newline, is still an error naming the line", () => {
    const file = path.join(dir, "bad.jsonl");
    fs.writeFileSync(file, '{"step":1}\n{"step":\n{"step":3}\n');
    expect(() => readJsonl(file)).toThrow(/bad\.jsonl:2: not valid JSON/);
    fs.writeFileSync(file, '{"step":1}\n{"step":\n');
    expect(() => readJsonl(file)).toThrow(ReportInputError);
  });
});
