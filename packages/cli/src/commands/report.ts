import fs from "node:fs";
import { buildReport, formatReportMarkdown, readHumanLabels, readResults, type ResultRecord } from "@rarl/judge";
import type { Command } from "commander";

/**
 * Judge-results report: reads results JSONL files and returns the Table-3/6-style Markdown (or JSON).
 * Kept separate from `register` so other report kinds (e.g. an HTML training report) can share `rarl report`.
 */
export function judgeResultsReport(files: string[], opts: { json?: boolean; human?: string; title?: string } = {}): string {
  const rows: ResultRecord[] = files.flatMap((f) => readResults(f));
  const report = buildReport(rows, { human: opts.human ? readHumanLabels(opts.human) : undefined });
  return opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReportMarkdown(report, { title: opts.title });
}

/** `rarl report results.jsonl [more.jsonl...]`: per dataset x judge reasoning/final %, counts, failures, agreement. */
export function register(program: Command): void {
  program
    .command("report")
    .description("Report judge results as a Markdown table laid out like the paper's Tables 3 and 6 (or JSON)")
    .argument("<results...>", "results JSONL files from `rarl judge` (several judges are compared)")
    .option("--json", "print the report as JSON")
    .option("--human <labels>", "human labels JSONL {id, reasoning_score, prediction_score, dataset?}: added as 'Human Evaluation'")
    .option("--title <text>", "heading above the table (e.g. 'Our experiments with the proposed pipeline: RL + LoRA')")
    .option("--out <file>", "also write the report to this file")
    .action((files: string[], o) => {
      const text = judgeResultsReport(files, { json: o.json, human: o.human, title: o.title });
      if (o.out) fs.writeFileSync(o.out, text);
      process.stdout.write(text);
    });
}
