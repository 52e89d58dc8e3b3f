#!/usr/bin/env node
// The RARL-TS demo: synthetic medical VQA -> tiny random Qwen2-VL -> full-SFT warm-up -> RARL (GRPO + LoRA) and a
// same-budget SFT baseline -> offline-judged evals -> before/after table + HTML report. Every stage runs through the
// `rarl` CLI (from source, via tsx: no build needed) and is skipped when its outputs exist, so an interrupted demo
// resumes where it stopped (training stages continue from their last checkpoint with `rarl train --resume`).
//
//   node examples/demo/run.mjs [--fresh] [--quick]
//     --fresh   delete examples/demo/runs first
//     --quick   a 2-step version of every stage on a tiny set (smoke test, about a minute)
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { tsImport } from "tsx/esm/api";
import { cliEnv, continueFlags, repo } from "../lib/rarl-cli.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const runs = path.resolve(process.env.RARL_DEMO_DIR ?? (quick ? path.join(here, "runs", "quick") : path.join(here, "runs")));
// One demo per runs folder: a second one is refused naming the first's PID (a dead one's lock is taken over).
const { lockOutput } = await tsImport(path.join(repo, "packages/core/src/lock.ts"), import.meta.url);
try {
  lockOutput(runs, { command: "examples/demo/run.mjs" });
} catch (e) {
  process.stderr.write(`demo: ${e.message}\n`);
  process.exit(1);
}
if (args.includes("--fresh")) fs.rmSync(runs, { recursive: true, force: true });
fs.mkdirSync(runs, { recursive: true });

const SEED = 1; // data seed; every trainer config uses seed 0
const N = quick ? 40 : 2000; // synthetic questions, 2 per image (20% of the images held out: 400 test questions)
const EVAL_LIMIT = quick ? 4 : 400;
const env = { ...cliEnv, RARL_LOG_LEVEL: process.env.RARL_LOG_LEVEL ?? "warn" };
const t0 = performance.now();
const timings = [];

// CPU seconds of waited-for children (Linux /proc): a stage is single-threaded, so on an idle machine its wall time is
// about its CPU time. Printed beside the wall times, since a shared machine stretches only the latter.
function childCpu() {
  try {
    const f = fs.readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
    return (Number(f[13]) + Number(f[14])) / 100;
  } catch {
    return Number.NaN;
  }
}

function run(label, argv) {
  const t = performance.now();
  const c = childCpu();
  process.stderr.write(`\n== ${label}\n$ ${argv[0] === "steps" ? "tsx examples/demo/steps.ts" : "rarl"} ${(argv[0] === "steps" ? argv.slice(1) : argv).join(" ")}\n`);
  const r = spawnSync(process.execPath, ["--import", "tsx", path.join(repo, argv[0] === "steps" ? "examples/demo/steps.ts" : "packages/cli/src/bin.ts"), ...(argv[0] === "steps" ? argv.slice(1) : argv)], {
    cwd: repo,
    env,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const s = (performance.now() - t) / 1000;
  timings.push([label, s, childCpu() - c]);
  if (r.status !== 0) {
    process.stderr.write(`\ndemo: "${label}" failed (exit ${r.status ?? r.signal}); run the demo again to resume from here.\n`);
    process.exit(r.status ?? 1);
  }
}
const rel = (p) => path.relative(repo, p);
const exists = (...p) => fs.existsSync(path.join(runs, ...p));
const skip = (label) => process.stderr.write(`\n== ${label}: done already, skipped\n`);

// Training configs live beside this script; their paths are relative to their folder, so the run folder is passed
// through overrides when it is not the default.
function trainStage(label, config, outDir, doneFile, extra = []) {
  if (exists(outDir, "adapter", doneFile)) return skip(label);
  run(label, ["train", "--config", rel(path.join(runs, "configs", config)), ...continueFlags(path.join(runs, outDir)), ...extra]);
}

// The configs with this run folder's paths (and the quick sizes) written into runs/configs/.
fs.mkdirSync(path.join(runs, "configs"), { recursive: true });
for (const name of ["warmup.json", "sft.json", "grpo.json", "rewards.json"]) {
  const c = JSON.parse(fs.readFileSync(path.join(here, name), "utf8"));
  // paths in the configs are relative to examples/demo ("runs/..."); the copies live in <runs>/configs
  const inRuns = (p) => p.replace(/^runs\//, "../");
  if (c.model?.path) c.model.path = inRuns(c.model.path);
  if (c.data?.path) c.data.path = inRuns(c.data.path);
  if (c.out) c.out = inRuns(c.out);
  if (typeof c.tokenizer === "string") c.tokenizer = path.relative(path.join(runs, "configs"), path.resolve(here, c.tokenizer));
  if (quick && c.maxSteps) {
    c.maxSteps = 2;
    c.saveSteps = 1;
    if (c.data) c.data.limit = 8;
    if (c.warmupSteps) c.warmupSteps = 0;
    c.progress = false;
  }
  fs.writeFileSync(path.join(runs, "configs", name), `${JSON.stringify(c, null, 2)}\n`);
}

// a. the synthetic medical VQA set (56x56 images: 4 image tokens), then the demo's compact reasoning
if (exists("data", "samples.jsonl")) skip("synthetic data");
else run("synthetic data", ["data", "synth", "--out", rel(path.join(runs, "data")), "--n", String(N), "--size", "56", "--seed", String(SEED)]);
if (exists("data", "compact.jsonl")) skip("compact reasoning");
else run("compact reasoning", ["steps", "compact-data", path.join(runs, "data/samples.jsonl"), path.join(runs, "data/compact.jsonl")]);

// b. a tiny Qwen2-VL with random weights and the Qwen2-VL tokenizer cut down to the demo's tokens, then a full-SFT warm-up
if (exists("model-init", "model.safetensors")) skip("random tiny Qwen2-VL");
else run("random tiny Qwen2-VL", ["steps", "init-model", path.join(runs, "model-init"), path.join(repo, "test-fixtures/qwen2vl-tokenizer"), "0", path.join(runs, "data/compact.jsonl")]);
trainStage("warm-up: full SFT", "warmup.json", "warmup", "model.safetensors");

// c. RARL: GRPO + LoRA with the four rewards and the three templates; and the same-budget SFT (LoRA) baseline
trainStage("RARL: GRPO + LoRA", "grpo.json", "grpo", "adapter_config.json");
trainStage("baseline: SFT + LoRA, same budget", "sft.json", "sft", "adapter_config.json");

// d. evals on the held-out split, reasoning and non-reasoning prompting, offline judge
const evalDir = path.join(runs, "eval");
for (const [stem, adapter] of [
  ["warmup", null],
  ["sft", "sft/adapter"],
  ["grpo", "grpo/adapter"],
]) {
  for (const p of ["reasoning", "non-reasoning"]) {
    const out = path.join(evalDir, `${stem}-${p}.jsonl`);
    const judged = path.join(evalDir, `${stem}-${p}.judged.jsonl`);
    if (fs.existsSync(judged)) {
      skip(`eval ${stem} ${p}`);
      continue;
    }
    run(`eval ${stem} ${p}`, [
      "eval",
      "--model",
      rel(path.join(runs, "warmup/adapter")),
      ...(adapter ? ["--adapter", rel(path.join(runs, adapter))] : []),
      "--data",
      `rarl:${rel(path.join(runs, "data/compact.jsonl"))}`,
      "--split",
      "test",
      "--limit",
      String(EVAL_LIMIT),
      "--prompt",
      p,
      "--max-new-tokens",
      "48",
      "--batch-size",
      "20",
      "--out",
      rel(out),
      "--judge",
      "offline",
      "--judge-out",
      rel(judged),
      "--quiet",
    ]);
  }
}

// e. the before/after table and the HTML report
run("results table", ["steps", "summary", evalDir, path.join(runs, "results.json"), String(SEED)]);
run("HTML report", ["report", "--run", rel(path.join(runs, "grpo")), "--evals", rel(path.join(runs, "results.json")), "--html", rel(path.join(runs, "report.html")), "--title", "RARL-TS demo"]);

const total = (performance.now() - t0) / 1000;
const cpu = timings.reduce((a, t) => a + t[2], 0);
process.stderr.write(
  `\n== timings (wall, CPU)\n${timings.map(([l, s, c]) => `${s.toFixed(1).padStart(7)} s ${c.toFixed(1).padStart(7)} s  ${l}`).join("\n")}\n${total.toFixed(1).padStart(7)} s ${cpu.toFixed(1).padStart(7)} s  total (this invocation)\n`,
);
process.stdout.write(`\nreport: ${rel(path.join(runs, "report.html"))}\n`);
