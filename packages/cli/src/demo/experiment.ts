import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "@rarl/core";
import { offlineVerdict } from "@rarl/judge";
import { normalizeAnswer } from "@rarl/rewards";
import { loadEvalModel, runEval } from "../eval/run-eval";
import type { EvalRow } from "../report/html";
import { readJsonl } from "../report/io";
import { clusters, hierarchicalBootstrap, meanSe, verdict } from "./stats";

/** The demo's test splits: data split name -> results name. */
export const EXPERIMENT_SPLITS: ReadonlyArray<readonly [string, string]> = [
  ["test-id", "in-distribution"],
  ["test-ood", "out-of-distribution"],
  ["test-shifted", "shifted-images"],
];

/** One judged answer of one model. */
export interface JudgedAnswer {
  split: string;
  prompting: string;
  id: string;
  image: string;
  answer: string;
  correct: 0 | 1;
  reasoning: 0 | 1 | null;
}

/** What {@link evalSuite} evaluates. */
export interface EvalSuiteOptions {
  model: string;
  adapter?: string;
  /** `rarl:<samples.jsonl>` */
  data: string;
  /** [data split, prompting] pairs. */
  runs: Array<[string, string]>;
  /** JSON file to write: {model, adapter, answers: JudgedAnswer[]}. */
  out: string;
  maxNewTokens?: number;
  batchSize?: number;
  /** Keep the raw predictions JSONL of each run in this folder. */
  predictionsDir?: string;
}

/**
 * Loads one model (+ adapter) once and answers every (split, prompting) greedily, judging each answer with the offline
 * judge (structured facts); writes the judged answers. The image of a question is its `<image>-q<k>` id's stem.
 */
export async function evalSuite(o: EvalSuiteOptions): Promise<JudgedAnswer[]> {
  const loaded = await loadEvalModel(o.model, o.adapter);
  const answers: JudgedAnswer[] = [];
  try {
    for (const [split, prompting] of o.runs) {
      const out = path.join(o.predictionsDir ?? path.dirname(o.out), `${path.basename(o.out, ".json")}.${split}.${prompting}.jsonl`);
      const recs = await runEval({ model: o.model, data: o.data, prompt: prompting, split, out, maxNewTokens: o.maxNewTokens ?? 40, batchSize: o.batchSize ?? 25, loaded });
      for (const r of recs) {
        const v = await offlineVerdict(r);
        answers.push({ split, prompting, id: r.id, image: r.id.replace(/-q\d+$/, ""), answer: r.prediction, correct: v.prediction_score, reasoning: v.reasoning_score });
      }
    }
  } finally {
    loaded.dispose();
  }
  writeFileAtomic(o.out, `${JSON.stringify({ model: o.model, adapter: o.adapter ?? null, answers })}\n`);
  return answers;
}

/** Judged answers of the models of the experiment: the base, and per seed each arm. */
export interface ExperimentAnswers {
  base: JudgedAnswer[];
  /** seed -> arm ("sft" | "rarl") -> answers */
  arms: Map<number, { sft: JudgedAnswer[]; rarl: JudgedAnswer[] }>;
}

const key = (a: { split: string; prompting: string; id: string }) => `${a.split}\u0000${a.prompting}\u0000${a.id}`;
const mean = (xs: number[]) => (xs.length ? xs.reduce((a, x) => a + x, 0) / xs.length : Number.NaN);

/** Accuracy, reasoning score and n of one model's answers on one (split, prompting). */
function score(ans: JudgedAnswer[], split: string, prompting: string) {
  const a = ans.filter((x) => x.split === split && x.prompting === prompting);
  const rs = a.filter((x) => x.reasoning !== null).map((x) => x.reasoning as number);
  return { a, accuracy: mean(a.map((x) => x.correct)), reasoning: rs.length ? mean(rs) : null, n: a.length };
}

/** Per-question paired values of `f(arm answer, base/other answer)` of every seed, clustered by image. */
function pairedClusters(seeds: number[], get: (s: number) => JudgedAnswer[], other: (s: number) => JudgedAnswer[], split: string, prompting: string, f: (x: JudgedAnswer, y: JudgedAnswer) => number) {
  return seeds.map((s) => {
    const o = new Map(other(s).map((x) => [key(x), x]));
    const vals: Array<{ image: string; value: number }> = [];
    for (const x of get(s)) {
      if (x.split !== split || x.prompting !== prompting) continue;
      const y = o.get(key(x));
      if (y) vals.push({ image: x.image, value: f(x, y) });
    }
    return clusters(vals);
  });
}

/** The results.json of the demo experiment (issue 15's schema; extra fields are documented in examples/demo/README.md). */
export interface ExperimentResults {
  evals: Array<EvalRow & { split: string; se: number; seeds?: number[] }>;
  headroom: Record<string, unknown>;
  movement: Record<string, unknown>;
  paired: Array<Record<string, unknown>>;
  seeds: number[];
  verdict: string;
  verdict_why: string;
  [k: string]: unknown;
}

/**
 * The experiment's statistics: per (model, split, prompting) the accuracy and reasoning score (arms: mean over seeds
 * ± s.e. over seeds; the base: ± bootstrap s.e. over images), per seed rows, movement against the base, the paired
 * differences RARL − SFT, RARL − base, SFT − base (bootstrap over seeds, then images), and the pre-registered verdict.
 */
export function summarizeExperiment(x: ExperimentAnswers, headroom: Record<string, unknown>, facts: Record<string, unknown> = {}): ExperimentResults {
  const seeds = [...x.arms.keys()].sort((a, b) => a - b);
  const runs = [...new Set(x.base.map((a) => `${a.split}\u0000${a.prompting}`))].map((k) => k.split("\u0000") as [string, string]);
  const splitName = new Map(EXPERIMENT_SPLITS.map(([a, b]) => [a, b]));
  const evals: ExperimentResults["evals"] = [];
  const judge = "offline (structured facts; not an LLM judge)";
  for (const [split, prompting] of runs) {
    const sname = splitName.get(split) ?? split;
    const b = score(x.base, split, prompting);
    const bse = hierarchicalBootstrap([clusters(b.a.map((q) => ({ image: q.image, value: q.correct })))], { b: 1000 }).se;
    evals.push({ model: "warmup (base)", split: sname, prompting, accuracy: b.accuracy, reasoning: b.reasoning, n: b.n, se: bse, judge });
    for (const arm of ["sft", "rarl"] as const) {
      const per = seeds.map((s) => score(x.arms.get(s)![arm], split, prompting));
      const acc = meanSe(per.map((p) => p.accuracy));
      const rs = per.every((p) => p.reasoning !== null) ? meanSe(per.map((p) => p.reasoning as number)).mean : null;
      evals.push({ model: arm === "sft" ? "sft (LoRA)" : "rarl (GRPO + LoRA)", split: sname, prompting, accuracy: acc.mean, reasoning: rs, n: per[0]?.n ?? 0, se: acc.se, seeds, judge });
    }
  }
  for (const s of seeds)
    for (const arm of ["sft", "rarl"] as const)
      for (const [split, prompting] of runs) {
        const p = score(x.arms.get(s)![arm], split, prompting);
        const se = hierarchicalBootstrap([clusters(p.a.map((q) => ({ image: q.image, value: q.correct })))], { b: 500 }).se;
        evals.push({ model: `${arm}-seed${s}`, split: splitName.get(split) ?? split, prompting, accuracy: p.accuracy, reasoning: p.reasoning, n: p.n, se, judge });
      }

  const changed = (a: JudgedAnswer, b: JudgedAnswer) => (normalizeAnswer(a.answer) === normalizeAnswer(b.answer) ? 0 : 1);
  const movement: Record<string, unknown> = {};
  for (const arm of ["sft", "rarl"] as const) {
    const by: Record<string, unknown> = {};
    for (const [split, prompting] of runs) {
      const per = pairedClusters(seeds, (s) => x.arms.get(s)![arm], () => x.base, split, prompting, changed).map((c) => mean([...c.values()].flat()));
      by[`${splitName.get(split) ?? split}/${prompting}`] = { ...meanSe(per), per_seed: per };
    }
    movement[arm] = by;
  }
  const paired: Array<Record<string, unknown>> = [];
  const diffs: Array<[string, "sft" | "rarl" | "base", "sft" | "rarl" | "base"]> = [
    ["rarl-sft", "rarl", "sft"],
    ["rarl-base", "rarl", "base"],
    ["sft-base", "sft", "base"],
  ];
  const ansOf = (who: "sft" | "rarl" | "base") => (s: number) => (who === "base" ? x.base : x.arms.get(s)![who]);
  for (const [name, a, b] of diffs)
    for (const [split, prompting] of runs) {
      const c = pairedClusters(seeds, ansOf(a), ansOf(b), split, prompting, (p, q) => p.correct - q.correct);
      const r = hierarchicalBootstrap(c, { b: 2000, seed: 7 });
      paired.push({ difference: name, split: splitName.get(split) ?? split, prompting, mean: r.mean, se: r.se, ci95: r.ci95, bootstrap: `${r.b} replicates: seeds, then images within seed` });
    }
  const find = (d: string, split: string) => paired.find((p) => p.difference === d && p.split === split && p.prompting === "reasoning") as { mean: number; ci95: [number, number] } | undefined;
  const mv = (arm: "sft" | "rarl") => ((movement[arm] as Record<string, { mean: number }>)["in-distribution/reasoning"]?.mean ?? 0);
  const ood = find("rarl-sft", "out-of-distribution");
  const id = find("rarl-sft", "in-distribution");
  const v = ood && id ? verdict({ oodDelta: ood, idDelta: id, movement: { sft: mv("sft"), rarl: mv("rarl") } }) : { verdict: "not reproduced" as const, why: "missing splits" };
  return { ...facts, evals, headroom, movement, paired, seeds, verdict: v.verdict, verdict_why: v.why };
}

/** Reads the eval-suite files of the demo folder: eval/base.json, eval/{sft,rarl}-seed<k>.json. */
export function readExperimentAnswers(evalDir: string, seeds: number[]): ExperimentAnswers {
  const read = (f: string) => (JSON.parse(fs.readFileSync(path.join(evalDir, f), "utf8")) as { answers: JudgedAnswer[] }).answers;
  const arms = new Map<number, { sft: JudgedAnswer[]; rarl: JudgedAnswer[] }>();
  for (const s of seeds) arms.set(s, { sft: read(`sft-seed${s}.json`), rarl: read(`rarl-seed${s}.json`) });
  return { base: read("base.json"), arms };
}

/** Markdown table of the experiment's main rows (mean ± s.e.). */
export function formatExperimentTable(r: ExperimentResults): string {
  const pc = (x: number | null) => (x === null || Number.isNaN(x) ? "n/a" : (100 * x).toFixed(1));
  const lines = ["| model | split | prompting | accuracy % (± s.e.) | reasoning % | n |", "| --- | --- | --- | --- | --- | --- |"];
  for (const e of r.evals.filter((e) => !/-seed\d+$/.test(e.model))) lines.push(`| ${e.model} | ${e.split} | ${e.prompting} | ${pc(e.accuracy)} ± ${pc(e.se)} | ${pc(e.reasoning)} | ${e.n} |`);
  return `${lines.join("\n")}\n`;
}

/** Reads a headroom JSON written by `rarl eval --samples` (its `metrics`). */
export function readHeadroom(file: string): Record<string, unknown> {
  return (JSON.parse(fs.readFileSync(file, "utf8")) as { metrics: Record<string, unknown> }).metrics;
}

export { readJsonl };
