#!/usr/bin/env node
// The paper's Table 2 on CV-Bench: SFT against RL (GRPO) with LoRA at 500, 1,000 and 5,000 training samples, all
// through the `rarl` CLI. Trains six adapters, answers CV-Bench with each (reasoning prompt, as in the paper), and
// prints Count / Relation / Depth / Distance / Total accuracy plus the official CV-Bench score. Not run in CI (hours
// on a GPU); `--dry-run` only validates every run's config and prints the estimates.
//
//   node examples/cv-bench/sweep.mjs [--dry-run] [--sizes 500,1000,5000] [--methods rl-lora,sft]
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cliEnv, continueFlags, option, rarlRunner, repo } from "../lib/rarl-cli.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const dry = args.includes("--dry-run");
const SIZES = option(args, "--sizes", "500,1000,5000").split(",").map(Number);
const METHODS = option(args, "--methods", "sft,rl-lora").split(",");
const rel = (p) => path.relative(repo, path.join(here, p));
const rarl = rarlRunner("cv-bench sweep", "run again to resume (finished runs are skipped)");

const runs = [];
for (const method of METHODS) {
  for (const n of SIZES) {
    const out = `runs/${method}-${n}`;
    const config = rel(`${method}.json`);
    runs.push({ method, n, out });
    const train = ["train", "--config", config, "--set", `data.limit=${n}`, "--set", `out=${out}`];
    if (dry) {
      rarl([...train, "--dry-run"]);
      continue;
    }
    if (fs.existsSync(path.join(here, out, "adapter", "adapter_config.json")) && fs.existsSync(path.join(here, out, "DONE"))) continue;
    rarl([...train, ...continueFlags(path.join(here, out))]);
    fs.writeFileSync(path.join(here, out, "DONE"), "");
  }
}
if (dry) process.exit(0);

// Answers for every run (greedy, reasoning prompt), then the table.
for (const r of runs) {
  const preds = path.join(here, r.out, "cv-bench.preds.jsonl");
  if (!fs.existsSync(preds)) {
    rarl(["eval", "--model", rel("models/Qwen2-VL-2B-Instruct"), "--adapter", rel(`${r.out}/adapter`), "--data", `cv-bench:${rel("data/cv-bench")}`, "--prompt", "reasoning", "--out", path.relative(repo, preds)]);
  }
}
const r = spawnSync(process.execPath, ["--import", "tsx", path.join(here, "score.ts"), ...runs.map((x) => `${x.method === "sft" ? "SFT" : "RL w/ LoRA"}=${x.n}=${path.join(here, x.out, "cv-bench.preds.jsonl")}`)], {
  cwd: repo,
  env: cliEnv,
  stdio: "inherit",
});
process.exit(r.status ?? 1);
