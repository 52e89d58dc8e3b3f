import { readFileSync } from "node:fs";
import { completeJsonlLines, writeFileAtomic } from "@rarl/core";
import { buildReportHtml, type CompletionRow, type EvalRow, type MetricsRow, type ReportInput, type SampleRow } from "./html";
import { RarlError } from "@rarl/core";

/** A run file could not be read or parsed. */
export class ReportInputError extends RarlError {}

/**
 * Reads a JSONL file; every bad line is an error naming the file and line, except a torn last line (text after the
 * last newline that is not JSON: a crash while it was written), which is ignored with a warning.
 */
export function readJsonl<T = Record<string, unknown>>(file: string): T[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ReportInputError(`cannot read ${file}: ${(err as Error).message}`, { details: { file }, cause: err });
  }
  const out: T[] = [];
  completeJsonlLines(file, text).forEach((line, i) => {
    if (!line.trim()) return;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      throw new ReportInputError(`${file}:${i + 1}: not valid JSON (expected one JSON object per line)`, {
        details: { file, line: i + 1 },
      });
    }
  });
  return out;
}

export interface WriteReportOptions {
  metricsFile: string;
  evals?: EvalRow[];
  samples?: SampleRow[];
  completions?: CompletionRow[];
  facts?: ReportInput["facts"];
  title?: string;
  out: string;
}

/** Builds the HTML report from a metrics JSONL file and writes it atomically. */
export function writeReport(opts: WriteReportOptions): string {
  const metrics = readJsonl<MetricsRow>(opts.metricsFile);
  if (metrics.length === 0) {
    throw new ReportInputError(`${opts.metricsFile}: no metrics rows (expected one JSON line per training step)`, {
      details: { file: opts.metricsFile },
    });
  }
  const html = buildReportHtml({ metrics, evals: opts.evals, samples: opts.samples, completions: opts.completions, facts: opts.facts, title: opts.title });
  writeFileAtomic(opts.out, html);
  return opts.out;
}
