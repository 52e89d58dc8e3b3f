import { writeFileAtomic } from "@rarl/core";
import { buildReport, formatSectionsMarkdown, type JudgeReport, readHumanLabels, readResults, type ResultRecord } from "@rarl/judge";
import type { Command } from "commander";
import { writeRunReport } from "../report/run";

/** Options of {@link judgeResultsReport}. */
export interface JudgeResultsReportOptions {
  /** Print JSON instead of Markdown. */
  json?: boolean;
  /** Human labels JSONL for the positional files (shown as "Human Evaluation"). */
  human?: string;
  /** Heading above the table. */
  title?: string;
  /** Titled sections, each "<title>=<file>[,<file>...]"; a file written "human:<labels.jsonl>" adds human labels to that section. */
  sections?: string[];
}

function loadGroup(files: string[], human?: string): JudgeReport {
  const rows: ResultRecord[] = [];
  let labels = human ? readHumanLabels(human) : undefined;
  for (const f of files) {
    if (f.startsWith("human:")) labels = [...(labels ?? []), ...readHumanLabels(f.slice("human:".length))];
    else rows.push(...readResults(f));
  }
  return buildReport(rows, { human: labels });
}

/**
 * Judge-results report: reads results JSONL files and returns the Table-3/6-style Markdown (or JSON).
 * Kept apart from `register` so other report kinds (e.g. an HTML training report) can share `rarl report`.
 */
export function judgeResultsReport(files: string[], opts: JudgeResultsReportOptions = {}): string {
  const sections: Array<{ title?: string; report: JudgeReport }> = [];
  if (files.length) sections.push({ report: loadGroup(files, opts.human) });
  for (const spec of opts.sections ?? []) {
    const eq = spec.lastIndexOf("=");
    if (eq <= 0 || eq === spec.length - 1) throw new Error(`--section "${spec}": expected "<title>=<results.jsonl>[,<more.jsonl>...]"`);
    sections.push({ title: spec.slice(0, eq), report: loadGroup(spec.slice(eq + 1).split(",").filter(Boolean)) });
  }
  if (sections.length === 0) throw new Error("rarl report: give results files and/or --section");
  if (opts.json) {
    const value = sections.length === 1 && !sections[0].title ? sections[0].report : { sections };
    return `${JSON.stringify(value, null, 2)}\n`;
  }
  return formatSectionsMarkdown(sections, { title: opts.title });
}

/** `rarl report results.jsonl [more.jsonl...]`: per dataset x judge reasoning/final %, counts, failures, agreement. */
export function register(program: Command): void {
  program
    .command("report")
    .description("Report judge results as a Markdown table laid out like the paper's Tables 3 and 6 (or JSON)")
    .argument("[results...]", "results JSONL files from `rarl judge` (several judges are compared)")
    .option("--json", "print the report as JSON")
    .option("--human <labels>", "human labels JSONL {id, reasoning_score, prediction_score, dataset?}: added as 'Human Evaluation'")
    .option(
      "--section <title=files>",
      "a titled block of rows, as in Table 3 (repeatable): 'RL + LoRA=gpt.jsonl,gemini.jsonl[,human:labels.jsonl]'",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option("--title <text>", "heading above the table")
    .option("--out <file>", "also write the report to this file")
    .option("--run <dir>", "HTML training report of a `rarl train` RUN_DIR (metrics.jsonl, samples.jsonl; evals from --evals or RUN_DIR/evals.json); needs --html")
    .option("--html <file>", "with --run: the static HTML report to write")
    .option("--evals <file>", "with --run: before/after table JSON ([{model, prompting, accuracy, reasoning, n}] or {evals: [...]})")
    .action((files: string[], o) => {
      if (o.run || o.html) {
        if (!o.run || !o.html) throw new Error("rarl report: --run and --html go together");
        const out = writeRunReport({ run: o.run, html: o.html, evals: o.evals, title: o.title });
        process.stderr.write(`rarl report: wrote ${out}\n`);
        if (files.length === 0 && !o.section.length) return;
      }
      const text = judgeResultsReport(files, { json: o.json, human: o.human, title: o.title, sections: o.section });
      if (o.out) writeFileAtomic(o.out, text);
      process.stdout.write(text);
    });
}
