// Shared by the example scripts (cv-bench/sweep.mjs, medical-rarl/run.mjs, demo/run.mjs): run the `rarl` CLI from
// source (through tsx: no build step) in the repository root, and read `--name value` options.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Environment of the CLI child processes: tsx resolves the @rarl/* packages through the CLI's tsconfig. */
export const cliEnv = { ...process.env, TSX_TSCONFIG_PATH: path.join(repo, "packages/cli/tsconfig.json") };

/** The value after `name` in `args`, or `dflt` when `name` is absent. */
export function option(args, name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
}

/**
 * A function that runs `rarl <argv>` (echoing the command) and, when it fails, prints `<label>: "rarl <cmd>" failed
 * (exit N); <hint>` and exits with its status.
 */
export function rarlRunner(label, hint) {
  return (argv) => {
    process.stderr.write(`\n$ rarl ${argv.join(" ")}\n`);
    const r = spawnSync(process.execPath, ["--import", "tsx", path.join(repo, "packages/cli/src/bin.ts"), ...argv], { cwd: repo, env: cliEnv, stdio: "inherit" });
    if (r.status !== 0) {
      process.stderr.write(`${label}: "rarl ${argv[0]}" failed (exit ${r.status ?? r.signal}); ${hint}\n`);
      process.exit(r.status ?? 1);
    }
  };
}

/**
 * The flags that let `rarl train` go on in `runDir`: `--resume` when it holds a checkpoint, `--overwrite` when it
 * holds an unfinished run without one (rarl train refuses an existing run folder without either), none when fresh.
 * A checkpoint counts as @rarl/grpo's listCheckpoints counts it (`checkpoint-<digits>` with its trainer_state.json),
 * so a folder a resume set aside (`checkpoint-N.corrupt`) or a temp folder does not ask for `--resume`.
 */
export function continueFlags(runDir) {
  const ck = path.join(runDir, "checkpoints");
  const isCheckpoint = (n) => /^checkpoint-\d+$/.test(n) && fs.existsSync(path.join(ck, n, "trainer_state.json"));
  if (fs.existsSync(ck) && fs.readdirSync(ck).some(isCheckpoint)) return ["--resume"];
  if (["metrics.jsonl", "checkpoints", "adapter"].some((m) => fs.existsSync(path.join(runDir, m)))) return ["--overwrite"];
  return [];
}
