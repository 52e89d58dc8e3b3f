#!/usr/bin/env node
// The RARL-TS demo as a small pre-registered experiment (examples/demo/README.md): synthetic medical VQA with two
// question families -> a tiny random Qwen2-VL -> a base model trained on family O only (it plays the pretrained model)
// -> headroom of the base on the target family T -> per seed, a small labelled family-T set shared by an SFT-LoRA arm
// and a GRPO-LoRA (RARL) arm with equal budgets -> greedy evals on disjoint-image test splits (in-distribution,
// out-of-distribution = family O, shifted images) -> mean ± s.e. over seeds, paired RARL − SFT with a bootstrap over
// seeds then images, movement, the pre-registered verdict -> results.json + HTML report.
// Every stage runs through the `rarl` CLI or examples/demo/steps.ts (from source, via tsx) and is skipped when its
// outputs exist; independent stages (the seeds' arms and evals) run two at a time, one per core.
//
//   node examples/demo/run.mjs [--fresh] [--quick] [--jobs N]
//     --fresh   delete the run folder first
//     --quick   a 2-step version of every stage on tiny splits (smoke test)
//     --jobs N  stages run at once (default 2)
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { tsImport } from "tsx/esm/api";
import { cliEnv, continueFlags, option, repo } from "../lib/rarl-cli.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes("--quick");
const JOBS = Number(option(args, "--jobs", "2"));
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

// ---- the design (pre-registered in README.md; change it there first) ----
const DATA_SEED = 1;
const SEEDS = quick ? [1, 2] : [1, 2, 3];
const SHIFT = "lesion=190;gamma=1.5;grain=0.25";
const SPLITS = quick
  ? ["base:12:O", ...SEEDS.map((s) => `label-s${s}:3:T`), "val:2:T", "test-id:3:T", "test-ood:3:O", `test-shifted:3:T:${SHIFT}`]
  : ["base:600:O", ...SEEDS.map((s) => `label-s${s}:32:T`), "val:40:T", "test-id:50:T", "test-ood:50:O", `test-shifted:50:T:${SHIFT}`];
// [data split, prompting] of every model's eval suite
const EVALS = [
  ["test-id", "reasoning"],
  ["test-id", "non-reasoning"],
  ["test-id", "explanation-required"],
  ["test-ood", "reasoning"],
  ["test-ood", "non-reasoning"],
  ["test-shifted", "reasoning"],
];
const MAX_NEW = 40;
const G = 4; // GRPO's numGenerations, also the headroom's G

const env = { ...cliEnv, RARL_LOG_LEVEL: process.env.RARL_LOG_LEVEL ?? "warn" };
const t0 = performance.now();
const loadAtStart = os.loadavg()[0];
const timings = [];
const rel = (p) => path.relative(repo, p);
const exists = (...p) => fs.existsSync(path.join(runs, ...p));

function run(label, argv) {
  const steps = argv[0] === "steps";
  const script = path.join(repo, steps ? "examples/demo/steps.ts" : "packages/cli/src/bin.ts");
  const rest = steps ? argv.slice(1) : argv;
  process.stderr.write(`\n== ${label}\n$ ${steps ? "tsx examples/demo/steps.ts" : "rarl"} ${rest.join(" ")}\n`);
  const t = performance.now();
  return new Promise((resolve) => {
    const c = spawn(process.execPath, ["--import", "tsx", script, ...rest], { cwd: repo, env, stdio: ["ignore", "inherit", "inherit"] });
    c.on("exit", (code, signal) => {
      const s = (performance.now() - t) / 1000;
      timings.push([label, s]);
      if (code !== 0) {
        process.stderr.write(`\ndemo: "${label}" failed (exit ${code ?? signal}); run the demo again to resume from here.\n`);
        process.exit(code ?? 1);
      }
      process.stderr.write(`== ${label}: ${s.toFixed(1)} s\n`);
      resolve();
    });
  });
}
const skip = (label) => process.stderr.write(`\n== ${label}: done already, skipped\n`);

/** Runs the async thunks at most `n` at a time. */
async function pool(n, tasks) {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]();
  };
  await Promise.all(Array.from({ length: Math.min(n, tasks.length) }, worker));
}

// The configs beside this script, with this run folder's paths, one per seed, written into <runs>/configs/.
const cfgDir = path.join(runs, "configs");
fs.mkdirSync(cfgDir, { recursive: true });
const read = (name) => JSON.parse(fs.readFileSync(path.join(here, name), "utf8"));
const inRuns = (p) => p.replace(/^runs\//, "../");
function writeConfig(name, c, train = true) {
  if (c.model?.path) c.model.path = inRuns(c.model.path);
  if (c.data?.path) c.data.path = inRuns(c.data.path);
  if (c.out) c.out = inRuns(c.out);
  if (typeof c.tokenizer === "string") c.tokenizer = path.relative(cfgDir, path.resolve(here, c.tokenizer));
  if (train) c.progress = false;
  if (train && quick) {
    if (c.maxSteps) c.maxSteps = 2;
    else c.numEpochs = 1;
    c.saveSteps = 1;
    if (c.warmupSteps) c.warmupSteps = 0;
  }
  fs.writeFileSync(path.join(cfgDir, name), `${JSON.stringify(c, null, 2)}\n`);
  return rel(path.join(cfgDir, name));
}
writeConfig("rewards.json", read("rewards.json"), false);
const baseCfg = writeConfig("base.json", read("base.json"));
const armCfg = {};
for (const s of SEEDS)
  for (const [arm, file] of [
    ["rarl", "grpo.json"],
    ["sft", "sft.json"],
  ]) {
    const c = read(file);
    c.seed = s;
    c.data.split = `label-s${s}`;
    c.out = `runs/${arm}-seed${s}`;
    armCfg[`${arm}${s}`] = writeConfig(`${arm}-seed${s}.json`, c);
  }

async function trainStage(label, config, outDir, doneFile) {
  if (exists(outDir, "adapter", doneFile)) return skip(label);
  // --resume from a checkpoint, --overwrite a run that stopped before its first one (rarl train refuses a used folder)
  await run(label, ["train", "--config", config, ...continueFlags(path.join(runs, outDir))]);
}
const data = path.join(runs, "data/compact.jsonl");
const baseModel = rel(path.join(runs, "base/adapter"));
async function evalStage(label, stem, adapter) {
  const out = path.join(runs, "eval", `${stem}.json`);
  if (fs.existsSync(out)) return skip(label);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  await run(label, ["steps", "eval-suite", baseModel, adapter ?? "-", data, out, String(MAX_NEW), EVALS.map((e) => e.join(":")).join(",")]);
}

// a. data: disjoint images per split; family O for the base and the OOD test, family T elsewhere; a style shift
if (exists("data", "samples.jsonl")) skip("synthetic data");
else await run("synthetic data", ["data", "synth", "--out", rel(path.join(runs, "data")), "--size", "56", "--seed", String(DATA_SEED), "--splits", SPLITS.join(",")]);
if (exists("data", "compact.jsonl")) skip("compact reasoning");
else await run("compact reasoning", ["steps", "compact-data", path.join(runs, "data/samples.jsonl"), data]);

// b. a random tiny Qwen2-VL (trimmed vocabulary), then the base: full SFT on family O only
if (exists("model-init", "model.safetensors")) skip("random tiny Qwen2-VL");
else await run("random tiny Qwen2-VL", ["steps", "init-model", path.join(runs, "model-init"), path.join(repo, "test-fixtures/qwen2vl-tokenizer"), "0", data]);
await trainStage("base: full SFT on family O", baseCfg, "base", "model.safetensors");

// c. headroom of the base on the in-distribution questions (GRPO's sampler and training prompt), and the base's evals
const headroom = path.join(runs, "eval", "headroom.json");
const tasks = [
  async () => {
    if (fs.existsSync(headroom)) return skip("headroom");
    const hArgs = ["--model", baseModel, "--data", `rarl:${rel(data)}`, "--split", "test-id", "--prompt", "explanation-required", "--max-new-tokens", String(MAX_NEW)];
    await run("headroom of the base (G samples per question)", ["eval", ...hArgs, "--batch-size", "25", "--samples", String(G), "--temperature", "1", "--top-k", "20", "--out", rel(path.join(runs, "eval", "headroom.jsonl")), "--headroom-out", rel(headroom), "--quiet"]);
  },
  () => evalStage("eval base", "base"),
];
// d. per seed: RARL (GRPO + LoRA) and SFT (LoRA) on the seed's labelled set, then their evals
for (const s of SEEDS) {
  tasks.push(async () => {
    await trainStage(`seed ${s}: RARL (GRPO + LoRA)`, armCfg[`rarl${s}`], `rarl-seed${s}`, "adapter_config.json");
    await evalStage(`seed ${s}: eval RARL`, `rarl-seed${s}`, rel(path.join(runs, `rarl-seed${s}/adapter`)));
  });
  tasks.push(async () => {
    await trainStage(`seed ${s}: SFT (LoRA)`, armCfg[`sft${s}`], `sft-seed${s}`, "adapter_config.json");
    await evalStage(`seed ${s}: eval SFT`, `sft-seed${s}`, rel(path.join(runs, `sft-seed${s}/adapter`)));
  });
}
fs.mkdirSync(path.join(runs, "eval"), { recursive: true });
await pool(JOBS, tasks);

// e. statistics, verdict, results.json and the HTML report
const facts = {
  data_seed: DATA_SEED,
  splits: SPLITS,
  judge: "offline judge, structured facts (modality, lesion, side, size); not an LLM judge",
  load_average_at_start: loadAtStart,
};
await run("results", ["steps", "results", path.join(runs, "eval"), headroom, path.join(runs, "results.json"), SEEDS.join(","), JSON.stringify(facts)]);
await run("HTML report", ["report", "--run", rel(path.join(runs, `rarl-seed${SEEDS[0]}`)), "--evals", rel(path.join(runs, "results.json")), "--html", rel(path.join(runs, "report.html")), "--title", "RARL-TS demo: RARL vs SFT from a family-O base"]);

const total = (performance.now() - t0) / 1000;
process.stderr.write(`\n== timings (wall; stages overlap, ${JOBS} at a time)\n${timings.map(([l, s]) => `${s.toFixed(1).padStart(7)} s  ${l}`).join("\n")}\n${total.toFixed(1).padStart(7)} s  total (this invocation), load average now ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}\n`);
process.stdout.write(`\nresults: ${rel(path.join(runs, "results.json"))}\nreport: ${rel(path.join(runs, "report.html"))}\n`);
