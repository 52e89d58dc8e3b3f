import path from "node:path";
import type { Command } from "commander";
import { checkConfigPaths, loadTrainConfig, trainerInput } from "../config/train-schema";

/** `rarl train`: GRPO or SFT training from a config file (logic in @rarl/grpo's runTrain). */
export function register(program: Command): void {
  program
    .command("train")
    .description('Train with GRPO (RARL) or SFT: `trainer: "grpo" | "sft"` in the config; writes metrics.jsonl, checkpoints/ and adapter/ to RUN_DIR')
    .requiredOption("--config <file>", "trainer config (JSON or YAML): trainer fields (see GRPOConfig/SFTConfig in @rarl/grpo) + model, data, prompts, rewards sections")
    .option("--out <dir>", "RUN_DIR (default: the config's `out`, else runs/<trainer>)")
    .option("--max-steps <n>", "stop after N steps (overrides maxSteps)", (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`--max-steps must be a positive integer, got ${v}`);
      return n;
    })
    .option("--resume", "continue from the newest checkpoint in RUN_DIR")
    .option("--overwrite", "RUN_DIR holds a run: delete it and start over (without --resume or --overwrite such a RUN_DIR is refused)")
    .option("--set <key=value>", "override a config field (repeatable; JSON values), e.g. --set beta=0.02 --set model.lora.r=16", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option("--dry-run", "validate the config, the model folder and every data file, then estimate memory and time; no training")
    .option("--gflops <n>", "--dry-run: matmul rate in GFLOP/s for the time estimate (default: measured on this backend)", Number)
    .option("--memory-gib <n>", "--dry-run: memory the training may use, in GiB (the device's, e.g. a GPU's); the dry run fails when its peak estimate exceeds it (default: this machine's memory)", Number)
    .action(async (o: { config: string; out?: string; maxSteps?: number; resume?: boolean; overwrite?: boolean; set: string[]; dryRun?: boolean; gflops?: number; memoryGib?: number }) => {
      // Validation against the shipped schema and path checks run before any heavy import (fails in well under a second).
      const { config, configDir } = loadTrainConfig(o.config, o.set);
      checkConfigPaths(config, configDir, { evalData: o.dryRun });
      if (o.dryRun) {
        const { dryRunCommand } = await import("../config/dry-run");
        if (o.memoryGib !== undefined && !(o.memoryGib > 0)) throw new Error(`--memory-gib must be a number > 0, got ${o.memoryGib}`);
        await dryRunCommand({ config, configDir, maxSteps: o.maxSteps, gflops: o.gflops, memoryBytes: o.memoryGib !== undefined ? o.memoryGib * 2 ** 30 : undefined });
        return;
      }
      const { runTrain } = await import("@rarl/grpo");
      const res = await runTrain({ config: trainerInput(config), configDir, out: o.out, maxSteps: o.maxSteps, resume: o.resume, overwrite: o.overwrite });
      if (res.reason === "interrupted") {
        process.stderr.write(
          `rarl train: interrupted${res.signal ? ` by ${res.signal}` : ""} at step ${res.steps}/${res.totalSteps}; checkpoint ${res.lastCheckpoint} (continue with --resume)\n`,
        );
        process.exitCode = res.signal === "SIGTERM" ? 143 : 130; // 128 + the signal's number, as a shell reports it
        return;
      }
      process.stderr.write(`rarl train: ${res.steps} steps done; adapter in ${res.adapterDir}, metrics in ${path.join(res.runDir, "metrics.jsonl")}\n`);
    });
}
