// Table 2 from CV-Bench predictions: per-task accuracy (Count, Relation, Depth, Distance), the total, and the
// official CV-Bench score. Usage (sweep.mjs calls it): tsx examples/cv-bench/score.ts "LABEL=N=preds.jsonl" ...
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cvBenchScore, loadDataset } from "@rarl/datasets";
import { matchChoice } from "@rarl/rewards";

const here = path.dirname(fileURLToPath(import.meta.url));
const TASKS = ["Count", "Relation", "Depth", "Distance"];

const truth = new Map<string, { task: string; source: string; choices: string[]; letter: string }>();
for await (const s of loadDataset({ format: "cv-bench", path: path.join(here, "data/cv-bench") })) {
  const e = (s.extra ?? {}) as Record<string, unknown>;
  truth.set(s.id, { task: String(e.task), source: String(e.source), choices: s.choices ?? [], letter: String(e.answer_letter) });
}

const pct = (a: number, b: number) => (b ? `${((100 * a) / b).toFixed(2)}%` : "n/a");
const lines = ["| Method | Training samples | Count | Relation | Depth | Distance | Total | CV-Bench score |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"];
for (const arg of process.argv.slice(2)) {
  const [label, n, file] = arg.split("=");
  const ok: Record<string, number> = {};
  const all: Record<string, number> = {};
  const graded: Array<{ source: string; correct: boolean }> = [];
  for (const line of fs.readFileSync(file, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const p = JSON.parse(line) as { id: string; prediction: string };
    const t = truth.get(p.id);
    if (!t) throw new Error(`${file}: id ${p.id} is not in CV-Bench`);
    const k = matchChoice(p.prediction, t.choices);
    const correct = k !== null && String.fromCharCode(65 + k) === t.letter;
    all[t.task] = (all[t.task] ?? 0) + 1;
    ok[t.task] = (ok[t.task] ?? 0) + (correct ? 1 : 0);
    graded.push({ source: t.source, correct });
  }
  const tot = graded.length;
  const right = graded.filter((g) => g.correct).length;
  const score = cvBenchScore(graded);
  lines.push(`| ${label} | ${Number(n).toLocaleString("en-US")} | ${TASKS.map((t) => pct(ok[t] ?? 0, all[t] ?? 0)).join(" | ")} | ${pct(right, tot)} | ${(100 * score.overall).toFixed(2)}% |`);
}
process.stdout.write(`${lines.join("\n")}\n`);
