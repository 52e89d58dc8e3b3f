import fs from "node:fs";
import path from "node:path";
import { runTrain } from "@rarl/grpo";
import type { Command } from "commander";
import { parseConfigText } from "../config/load";

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
    .action(async (o: { config: string; out?: string; maxSteps?: number; resume?: boolean }) => {
      const file = path.resolve(o.config);
      const config = parseConfigText(fs.readFileSync(file, "utf8"), file) as Record<string, unknown>;
      const res = await runTrain({ config, configDir: path.dirname(file), out: o.out, maxSteps: o.maxSteps, resume: o.resume });
      if (res.reason === "interrupted") {
        process.stderr.write(`rarl train: interrupted at step ${res.steps}/${res.totalSteps}; checkpoint ${res.lastCheckpoint} (continue with --resume)\n`);
        process.exitCode = 130;
        return;
      }
      process.stderr.write(`rarl train: ${res.steps} steps done; adapter in ${res.adapterDir}, metrics in ${path.join(res.runDir, "metrics.jsonl")}\n`);
    });
}
