import fs from "node:fs";
import path from "node:path";
import { withOutputLock } from "@rarl/core";
import { JsonlAppender, readPredictions } from "./io";
import { Judge, type JudgeOptions, type JudgeStats } from "./judge";
import type { PredictionRecord, ResultRecord } from "./types";

/** Options of {@link runJudge}: the judge options plus input and output. */
export interface RunJudgeOptions extends JudgeOptions {
  /** Predictions JSONL path, or records already validated. */
  predictions: string | PredictionRecord[];
  /** Results JSONL path; rewritten from the start (cached verdicts are written again at no cost). */
  out: string;
  /** fsync the results file after every line (slower; default false: each line is still written to the OS at once). */
  fsync?: boolean;
  /** Called after each result line is written. */
  onResult?: (r: ResultRecord, done: number, total: number) => void;
}

/** Summary of a run. */
export interface RunJudgeSummary {
  judge: string;
  out: string;
  total: number;
  scored: number;
  failed: number;
  /** Samples without a result line (0 unless the process was interrupted). */
  lost: number;
  /** Failed samples by kind. */
  failures: Record<string, number>;
  /** Each failed sample: id and reason. */
  failedItems: Array<{ id: string; error: string }>;
  stats: JudgeStats;
  wallMs: number;
}

/** Turns an outcome into a results-file row. */
function toResult(s: PredictionRecord, judge: Judge, o: Awaited<ReturnType<Judge["judge"]>>): ResultRecord {
  if (o.status === "scored" && o.verdict) {
    return {
      id: s.id,
      dataset: s.dataset,
      judge: judge.name,
      reasoning_score: o.verdict.reasoning_score,
      prediction_score: o.verdict.prediction_score,
      evaluation: o.verdict.evaluation,
      status: "scored",
      prompt_version: judge.promptVersion,
      cached: o.cached,
    };
  }
  return {
    id: s.id,
    dataset: s.dataset,
    judge: judge.name,
    reasoning_score: null,
    prediction_score: null,
    evaluation: "",
    status: "failed",
    error: o.error ?? "internal: unknown failure",
    prompt_version: judge.promptVersion,
    cached: o.cached,
  };
}

/**
 * Judges every prediction and appends one result line per sample as it arrives. Input problems
 * (missing fields, duplicate ids, unknown judge, missing API key) throw before any request is sent.
 * With a cache directory, an interrupted run resumes: cached samples cost no request. The results file is locked
 * for the run: a second writer gets an OutputLockedError (from @rarl/core) naming this process's PID.
 */
export async function runJudge(opts: RunJudgeOptions): Promise<RunJudgeSummary> {
  const t0 = Date.now();
  const samples = typeof opts.predictions === "string" ? readPredictions(opts.predictions) : opts.predictions;
  const judge = Judge.create(opts);
  fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
  let done = 0;
  const failedItems: Array<{ id: string; error: string }> = [];
  let scored = 0;
  try {
    // One writer per results file: a second run on the same --out is refused (naming the holder's PID).
    await withOutputLock(
      opts.out,
      async () => {
        const writer = new JsonlAppender(opts.out, { truncate: true, fsync: opts.fsync });
        try {
          await Promise.all(
            samples.map(async (s) => {
              const o = await judge.judge(s);
              const r = toResult(s, judge, o);
              writer.append(r);
              done++;
              if (r.status === "scored") scored++;
              else failedItems.push({ id: r.id, error: r.error! });
              opts.onResult?.(r, done, samples.length);
            }),
          );
        } finally {
          writer.close();
        }
      },
      { command: `rarl judge --judge ${judge.name}` },
    );
  } finally {
    judge.close();
  }
  const stats = judge.stats();
  const failures: Record<string, number> = {};
  for (const f of failedItems) {
    const k = f.error.split(":")[0];
    failures[k] = (failures[k] ?? 0) + 1;
  }
  return {
    judge: judge.name,
    out: opts.out,
    total: samples.length,
    scored,
    failed: failedItems.length,
    lost: samples.length - done,
    failures,
    failedItems,
    stats,
    wallMs: Date.now() - t0,
  };
}
