import fs from "node:fs";
import path from "node:path";
import { completeJsonlLines, JsonlWriter, writeFileAtomic } from "@rarl/core";

/**
 * Appends one JSON object per line to RUN_DIR/metrics.jsonl (and samples to samples.jsonl), each record one whole
 * line in one write. A torn last line left by a crash is cut off (with a warning) when the files are opened.
 */
export class MetricsWriter {
  readonly file: string;
  readonly samplesFile: string;
  readonly completionsFile: string;
  private writers: { metrics?: JsonlWriter; samples?: JsonlWriter; completions?: JsonlWriter } = {};

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
      writeFileAtomic(f, keep.length ? `${keep.join("\n")}\n` : "");
    }
  }

  write(record: Record<string, unknown>): void {
    this.writers.metrics ??= new JsonlWriter(this.file, { replacer: finite });
    this.writers.metrics.append(record);
  }

  writeSamples(record: Record<string, unknown>): void {
    this.writers.samples ??= new JsonlWriter(this.samplesFile, { replacer: finite });
    this.writers.samples.append(record);
  }

  close(): void {
    this.writers.metrics?.close();
    this.writers.samples?.close();
    this.writers.completions?.close();
    this.writers = {};
  }

  /** One line per logging step: {step, completions: [{example, prompt, completion, rewards: {name: x}, reward, advantage}]} (TRL log_completions). */
  writeCompletions(record: Record<string, unknown>): void {
    this.writers.completions ??= new JsonlWriter(this.completionsFile, { replacer: finite });
    this.writers.completions.append(record);
  }
}

/** JSON has no NaN/Infinity: write them as null (and keep the rest). */
function finite(_k: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isFinite(v) ? null : v;
}

/** Reads metrics.jsonl back (tests, reports); a torn last line (crash mid-write) is ignored with a warning. */
export function readMetrics(runDir: string): Array<Record<string, any>> {
  const f = path.join(runDir, "metrics.jsonl");
  if (!fs.existsSync(f)) return [];
  return completeJsonlLines(f, fs.readFileSync(f, "utf8")).filter((l) => l.trim()).map((l) => JSON.parse(l));
}
