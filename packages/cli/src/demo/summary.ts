import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "@rarl/core";
import { readResults } from "@rarl/judge";
import type { EvalRow } from "../report/html";

/** The demo's models (label, file stem) in table order. */
export const DEMO_MODELS: ReadonlyArray<readonly [string, string]> = [
  ["warm-up (full SFT)", "warmup"],
  ["SFT baseline (LoRA, same budget)", "sft"],
  ["RARL (GRPO + LoRA)", "grpo"],
];
export const DEMO_PROMPTINGS = ["reasoning", "non-reasoning"] as const;

/** Accuracy (mean prediction_score) and reasoning score (mean non-null reasoning_score) of a judge results file. */
export function scoreResults(file: string): { accuracy: number; reasoning: number | null; n: number; judge: string } {
  const rows = readResults(file);
  const scored = rows.filter((r) => r.status === "scored");
  const acc = scored.reduce((a, r) => a + (r.prediction_score ?? 0), 0) / Math.max(1, scored.length);
  const rs = scored.filter((r) => r.reasoning_score !== null && r.reasoning_score !== undefined);
  const reasoning = rs.length ? rs.reduce((a, r) => a + (r.reasoning_score as number), 0) / rs.length : null;
  return { accuracy: acc, reasoning, n: rows.length, judge: rows[0]?.judge ?? "" };
}

/** Markdown before/after table of eval rows. */
export function formatEvalTable(rows: EvalRow[]): string {
  const pct = (x: number | null) => (x === null ? "n/a" : `${(100 * x).toFixed(1)}%`);
  const lines = ["| model | prompting | final-answer accuracy | reasoning score | n |", "| --- | --- | --- | --- | --- |"];
  for (const r of rows) lines.push(`| ${r.model} | ${r.prompting} | ${pct(r.accuracy)} | ${pct(r.reasoning)} | ${r.n} |`);
  return `${lines.join("\n")}\n`;
}

/**
 * Collects `<evalDir>/<model>-<prompting>.judged.jsonl` of the demo's three models, writes `<out>` (JSON
 * {seed, judge, evals: EvalRow[]}) and returns the Markdown table.
 */
export function summarizeDemo(evalDir: string, out = path.join(evalDir, "..", "results.json"), facts: Record<string, unknown> = {}): string {
  const rows: EvalRow[] = [];
  for (const [label, stem] of DEMO_MODELS) {
    for (const p of DEMO_PROMPTINGS) {
      const f = path.join(evalDir, `${stem}-${p}.judged.jsonl`);
      if (!fs.existsSync(f)) continue;
      const s = scoreResults(f);
      rows.push({ model: label, prompting: p, accuracy: s.accuracy, reasoning: s.reasoning, n: s.n, judge: s.judge });
    }
  }
  writeFileAtomic(out, `${JSON.stringify({ ...facts, evals: rows }, null, 2)}\n`);
  return formatEvalTable(rows);
}
