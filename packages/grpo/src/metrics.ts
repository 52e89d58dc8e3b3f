import fs from "node:fs";
import path from "node:path";

/** Appends one JSON object per line to RUN_DIR/metrics.jsonl (and samples to samples.jsonl). */
export class MetricsWriter {
  readonly file: string;
  readonly samplesFile: string;
  readonly completionsFile: string;

  constructor(runDir: string) {
    fs.mkdirSync(runDir, { recursive: true });
    this.file = path.join(runDir, "metrics.jsonl");
    this.samplesFile = path.join(runDir, "samples.jsonl");
    this.completionsFile = path.join(runDir, "completions.jsonl");
  }

  /**
   * On resume from step K, drops lines of steps > K (written after that checkpoint by the interrupted run),
   * so the file reads as one uninterrupted run.
   */
  truncateAfter(step: number): void {
    for (const f of [this.file, this.samplesFile, this.completionsFile]) {
      if (!fs.existsSync(f)) continue;
      const keep = fs
        .readFileSync(f, "utf8")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .filter((l) => {
          try {
            return (JSON.parse(l) as { step?: number }).step! <= step;
          } catch {
            return false;
          }
        });
      fs.writeFileSync(f, keep.length ? `${keep.join("\n")}\n` : "");
    }
  }

  write(record: Record<string, unknown>): void {
    fs.appendFileSync(this.file, `${JSON.stringify(record, finite)}\n`);
  }

  writeSamples(record: Record<string, unknown>): void {
    fs.appendFileSync(this.samplesFile, `${JSON.stringify(record, finite)}\n`);
  }

  /** One line per logging step: {step, completions: [{example, prompt, completion, rewards: {name: x}, reward, advantage}]} (TRL log_completions). */
  writeCompletions(record: Record<string, unknown>): void {
    fs.appendFileSync(this.completionsFile, `${JSON.stringify(record, finite)}\n`);
  }
}

/** JSON has no NaN/Infinity: write them as null (and keep the rest). */
function finite(_k: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isFinite(v) ? null : v;
}

/** Reads metrics.jsonl back (tests, reports). */
export function readMetrics(runDir: string): Array<Record<string, any>> {
  const f = path.join(runDir, "metrics.jsonl");
  if (!fs.existsSync(f)) return [];
  return fs
    .readFileSync(f, "utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l));
}
