import fs from "node:fs";
import path from "node:path";
import type { CompletionRow, EvalRow, SampleRow } from "./html";
import { ReportInputError, readJsonl, writeReport } from "./io";

/**
 * Sample completions from a trainer's samples.jsonl ({step, samples: [{completion, reward, "reward/<name>": x, ...}]}):
 * the last `max` lines, each completion with its reward components.
 */
export function samplesFromRun(file: string, max = 8): SampleRow[] {
  if (!fs.existsSync(file)) return [];
  const out: SampleRow[] = [];
  for (const line of readJsonl<{ step?: number; samples?: Array<Record<string, unknown>> }>(file)) {
    for (const s of line.samples ?? []) {
      const rewards: Record<string, number> = {};
      for (const [k, v] of Object.entries(s)) if (k.startsWith("reward/") && typeof v === "number") rewards[k.slice(7)] = v;
      if (typeof s.reward === "number") rewards.total = s.reward;
      out.push({ step: line.step, prompt: typeof s.example === "string" ? s.example : undefined, completion: String(s.completion ?? ""), rewards });
    }
  }
  return out.slice(-max);
}

/**
 * The completions table of a run: the trainer's completions.jsonl ({step, completions: [{prompt, completion, rewards,
 * reward, advantage}]}, written with `logCompletions`), the last `max` rows.
 */
export function completionsFromRun(file: string, max = 64): CompletionRow[] {
  if (!fs.existsSync(file)) return [];
  const out: CompletionRow[] = [];
  for (const line of readJsonl<{ step?: number; completions?: Array<Record<string, unknown>> }>(file)) {
    for (const c of line.completions ?? []) {
      const num = (x: unknown) => (typeof x === "number" ? x : null);
      const rewards: Record<string, number | null> = {};
      for (const [k, v] of Object.entries((c.rewards as Record<string, unknown>) ?? {})) rewards[k] = num(v);
      out.push({ step: line.step ?? 0, prompt: typeof c.prompt === "string" ? c.prompt : undefined, completion: String(c.completion ?? ""), rewards, reward: num(c.reward), advantage: num(c.advantage) });
    }
  }
  return out.slice(-max);
}

/** Reads an evals file: a JSON array of EvalRow, or an object with an `evals` array (the demo's results.json). */
export function readEvals(file: string): EvalRow[] {
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new ReportInputError(`${file}: cannot read evals JSON: ${(e as Error).message}`, { details: { file }, cause: e });
  }
  const rows = Array.isArray(j) ? j : (j as { evals?: unknown }).evals;
  if (!Array.isArray(rows)) throw new ReportInputError(`${file}: expected a JSON array of {model, prompting, accuracy, reasoning, n} or {"evals": [...]}`, { details: { file } });
  rows.forEach((r, i) => {
    const x = r as Record<string, unknown>;
    if (typeof x.model !== "string" || typeof x.prompting !== "string" || typeof x.accuracy !== "number" || typeof x.n !== "number" || !(x.reasoning === null || typeof x.reasoning === "number")) {
      throw new ReportInputError(`${file}: evals[${i}] must be {model: string, prompting: string, accuracy: number, reasoning: number|null, n: number}`, { details: { file, index: i } });
    }
  });
  return rows as EvalRow[];
}

/**
 * The experiment summary of a results.json beside its evals (the demo's): the verdict, the headroom and the paired
 * RARL − SFT differences, as report facts. Missing fields are skipped.
 */
export function experimentFacts(file: string): Record<string, string> {
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch {
    return {};
  }
  if (!j || Array.isArray(j) || typeof j !== "object") return {};
  const out: Record<string, string> = {};
  const pc = (x: unknown) => (typeof x === "number" ? `${(100 * x).toFixed(1)}%` : "?");
  if (typeof j.verdict === "string") out.verdict = `${j.verdict}${typeof j.verdict_why === "string" ? ` (${j.verdict_why})` : ""}`;
  const h = j.headroom as Record<string, unknown> | undefined;
  if (h && typeof h === "object")
    out.headroom = `greedy ${pc(h.greedy)}, pass@1 ${pc(h.pass_at_1)}, pass@G ${pc(h.pass_at_g)} (G ${h.g}), maj@G ${pc(h.maj_at_g)}, flippable ${pc(h.flippable)}`;
  if (Array.isArray(j.seeds)) out.seeds = j.seeds.join(", ");
  if (Array.isArray(j.paired))
    for (const p of j.paired as Array<Record<string, unknown>>) {
      if (p.difference !== "rarl-sft" || p.prompting !== "reasoning" || !Array.isArray(p.ci95)) continue;
      const pts = (x: unknown) => (typeof x === "number" ? (100 * x).toFixed(1) : "?");
      out[`RARL − SFT, ${p.split}`] = `${pts(p.mean)} points, 95% CI [${pts(p.ci95[0])}, ${pts(p.ci95[1])}]`;
    }
  return out;
}

/** Options of {@link writeRunReport}. */
export interface RunReportOptions {
  /** RUN_DIR of `rarl train` (metrics.jsonl, samples.jsonl, config.json). */
  run: string;
  /** HTML file to write. */
  html: string;
  /** Evals JSON (default RUN_DIR/evals.json when present). */
  evals?: string;
  title?: string;
}

/** `rarl report --run RUN_DIR --html out.html`: the static HTML training report of a run. Returns the path written. */
export function writeRunReport(o: RunReportOptions): string {
  const metricsFile = path.join(o.run, "metrics.jsonl");
  if (!fs.existsSync(metricsFile)) throw new ReportInputError(`${o.run}: no metrics.jsonl (expected a RUN_DIR written by \`rarl train\`)`, { details: { file: metricsFile } });
  const evalsFile = o.evals ?? path.join(o.run, "evals.json");
  const evals = o.evals || fs.existsSync(evalsFile) ? readEvals(evalsFile) : undefined;
  const facts: Record<string, string | number> = { run: path.resolve(o.run) };
  if (evals) Object.assign(facts, experimentFacts(evalsFile));
  const cfgFile = path.join(o.run, "config.json");
  if (fs.existsSync(cfgFile)) {
    try {
      const c = JSON.parse(fs.readFileSync(cfgFile, "utf8")) as Record<string, unknown>;
      for (const k of ["trainer", "seed", "learningRate", "numGenerations", "beta", "maxSteps", "temperature", "lossType", "importanceSamplingLevel", "epsilon", "epsilonHigh", "delta", "topEntropyQuantile", "multiObjectiveAggregation"]) if (typeof c[k] === "string" || typeof c[k] === "number") facts[k] = c[k] as string | number;
    } catch {
      // config.json is informational here
    }
  }
  return writeReport({ metricsFile, evals, samples: samplesFromRun(path.join(o.run, "samples.jsonl")), completions: completionsFromRun(path.join(o.run, "completions.jsonl")), facts, title: o.title, out: o.html });
}
