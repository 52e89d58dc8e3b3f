import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JsonlWriter, repairJsonlForAppend, splitTornTail } from "./jsonl";
import { captureLogs } from "./testing/logs";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-jsonl-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const record = fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), fc.oneof(fc.string({ unit: "binary", maxLength: 12 }), fc.double(), fc.integer(), fc.boolean(), fc.constant(null)), {
  minKeys: 1,
  maxKeys: 4,
});

describe("splitTornTail (property: a file cut at every byte offset of its last record)", () => {
  it("keeps every whole record, drops only a torn last line", () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 4 }), (recs) => {
        const lines = recs.map((r) => `${JSON.stringify(r)}\n`);
        const head = Buffer.from(lines.slice(0, -1).join(""), "utf8");
        const last = Buffer.from(lines[lines.length - 1], "utf8");
        for (let cut = 0; cut <= last.length; cut++) {
          const text = Buffer.concat([head, last.subarray(0, cut)]).toString("utf8");
          const { complete, torn } = splitTornTail(text);
          const parsed = complete.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
          const whole = cut >= last.length - 1; // only the newline missing still parses
          expect(parsed).toEqual(whole ? recs : recs.slice(0, -1));
          expect(torn === null).toBe(whole || cut === 0);
        }
      }),
      { numRuns: 60, seed: 16 },
    );
  });
});

describe("JsonlWriter", () => {
  it("appends after a torn last line on a line of its own, with a warning", () => {
    const f = path.join(dir, "m.jsonl");
    fs.writeFileSync(f, '{"step":1}\n{"step":2,"lo');
    const { lines: warnings } = captureLogs(() => {
      const w = new JsonlWriter(f);
      w.append({ step: 2 });
      w.close();
    });
    expect(fs.readFileSync(f, "utf8")).toBe('{"step":1}\n{"step":2}\n');
    expect(warnings.join("\n")).toMatch(/m\.jsonl:2: ignoring a torn last line \(13 bytes/);
    fs.writeFileSync(f, '{"step":1}');
    expect(repairJsonlForAppend(f)).toBe('{"step":1}\n');
    expect(fs.readFileSync(f, "utf8")).toBe('{"step":1}\n');
  });
});
