import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { captureLogs } from "@rarl/core";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MetricsWriter, readMetrics } from "./metrics";

// Issue 16 item 5, property: metrics.jsonl cut at every byte offset of its last record (a crash mid-write) reads
// with every whole record kept and the cut one ignored with a warning, and a later run appends on a line of its own.

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-metrics-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const record = (step: number) =>
  fc.record({
    step: fc.constant(step),
    loss: fc.double({ noNaN: true, noDefaultInfinity: true }),
    reward: fc.oneof(fc.double({ min: -10, max: 10, noNaN: true }), fc.constant(null)),
    "rewards/format/mean": fc.double({ min: 0, max: 1, noNaN: true }),
    note: fc.string({ unit: fc.constantFrom("a", "é", "中", "😀", '"'), maxLength: 6 }),
  });

describe("metrics.jsonl cut at every byte offset of its last record (fast-check)", () => {
  it("readMetrics keeps the whole records and warns; MetricsWriter appends the next step on a line of its own", () => {
    fc.assert(
      fc.property(fc.tuple(record(1), record(2), record(3)), ([a, b, c]) => {
        const recs = [a, b, c];
        const runDir = path.join(dir, "run");
        const file = path.join(runDir, "metrics.jsonl");
        const head = Buffer.from(`${JSON.stringify(a)}\n${JSON.stringify(b)}\n`, "utf8");
        const last = Buffer.from(`${JSON.stringify(c)}\n`, "utf8");
        for (let cut = 0; cut <= last.length; cut++) {
          fs.mkdirSync(runDir, { recursive: true });
          fs.writeFileSync(file, Buffer.concat([head, last.subarray(0, cut)]));
          const whole = cut >= last.length - 1 ? 3 : 2;
          const torn = cut > 0 && whole === 2;
          const { value: read, lines: logs } = captureLogs(() => {
            const r = readMetrics(runDir);
            const w = new MetricsWriter(runDir);
            w.write({ step: 4 });
            w.close();
            return r;
          });
          expect(read).toEqual(recs.slice(0, whole));
          // one warning from the reader and one from the writer, which cut the torn line off before appending
          expect(logs.filter((l) => l.includes("ignoring a torn last line")).length).toBe(torn ? 2 : 0);
          expect(readMetrics(runDir)).toEqual([...recs.slice(0, whole), { step: 4 }]);
        }
      }),
      { numRuns: 5, seed: 164 },
    );
  });
});
