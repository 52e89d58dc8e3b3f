import { Command } from "commander";
import { commandModules } from "./commands/index";

/** Builds the `rarl` program with every registered subcommand. */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name("rarl")
    .description("RARL-TS: GRPO + LoRA fine-tuning of vision-language models (medical VQA), in TypeScript")
    .version("0.1.0")
    .showHelpAfterError();
  for (const m of commandModules) m.register(program);
  return program;
}

/**
 * Runs the CLI with the given argv (without node and script). Returns the exit code. A command sets a non-zero
 * code through `process.exitCode`; runCli returns it and puts the previous value back, so one in-process run does
 * not change the code of the next (bin.ts sets process.exitCode from the return value).
 */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  const saved = process.exitCode;
  process.exitCode = undefined;
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err: any) {
    if (err?.code === "commander.helpDisplayed" || err?.code === "commander.version") return 0;
    if (typeof err?.exitCode === "number" && String(err?.code ?? "").startsWith("commander.")) return err.exitCode;
    process.stderr.write(`rarl: ${err?.message ?? err}\n`);
    return 1;
  } finally {
    process.exitCode = saved;
  }
}
