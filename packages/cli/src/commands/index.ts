import { Command } from "commander";

/** A `rarl` subcommand module: commands/<name>.ts exports `register(program)`. */
export interface CommandModule {
  register(program: Command): void;
}

/**
 * A subcommand whose module is imported only when it runs. `rarl --help` and a failing command stay fast because
 * the heavy packages (tfjs, the model, the trainer) load inside the action, not at startup.
 */
export interface LazyCommand {
  /** The subcommand name (must match the `program.command(name)` in the module). */
  name: string;
  /** One line for `rarl --help` (the full help is the module's own: `rarl <name> --help`). */
  summary: string;
  /** Imports the module that registers the real command. */
  load: () => Promise<CommandModule>;
}

const lazyByProgram = new WeakMap<Command, Map<string, LazyCommand>>();

/** Imports a lazy command's module and runs `argv` (which starts with the command's name) through it. */
async function runLazy(program: Command, d: LazyCommand, argv: string[]): Promise<void> {
  const mod = await d.load();
  const real = new Command().name(program.name()).exitOverride().showHelpAfterError();
  mod.register(real);
  await real.parseAsync(argv, { from: "user" });
}

/** Builds a CommandModule that registers a cheap stub and defers the real registration to the first run. */
export function lazyCommand(d: LazyCommand): CommandModule {
  return {
    register(program: Command) {
      if (!lazyByProgram.has(program)) lazyByProgram.set(program, new Map());
      lazyByProgram.get(program)?.set(d.name, d);
      program
        .command(d.name)
        .description(d.summary)
        .helpOption(false)
        .allowUnknownOption()
        .allowExcessArguments()
        .action(async (_opts: unknown, stub: Command) => runLazy(program, d, [d.name, ...stub.args]));
    },
  };
}

/** `rarl help [command]`: the full help of a lazy command comes from its module. */
export const helpCommand: CommandModule = {
  register(program: Command) {
    program.helpCommand(false);
    program
      .command("help [command]")
      .description("display help for command")
      .action(async (name?: string) => {
        const d = name ? lazyByProgram.get(program)?.get(name) : undefined;
        if (d) return runLazy(program, d, [d.name, "--help"]);
        if (name && !program.commands.some((c) => c.name() === name)) program.error(`error: unknown command '${name}'`);
        program.outputHelp();
      });
  },
};

/**
 * Every `rarl` subcommand lives in its own module under commands/ and exports `register(program)`.
 * Add one entry here per subcommand: `lazyCommand({ name, summary, load: () => import("./x") })`
 * (or push an eagerly imported module).
 */
export const commandModules: CommandModule[] = [
  lazyCommand({
    name: "judge",
    summary: "Score predictions with an LLM judge (paper Appendix B prompt) or the offline judge",
    load: () => import("./judge"),
  }),
  lazyCommand({ name: "report", summary: "Report judge results like the paper's Tables 3 and 6, and the HTML training report", load: () => import("./report") }),
  lazyCommand({ name: "parity", summary: "Compare this implementation with Hugging Face reference outputs in a fixture folder", load: () => import("./parity") }),
  lazyCommand({ name: "reward", summary: "Score existing completions with a rewards config (audit a reward set before training)", load: () => import("./reward") }),
  lazyCommand({ name: "data", summary: "Dataset tools: stats, export to normalised JSONL, synthetic medical VQA", load: () => import("./data") }),
  lazyCommand({ name: "train", summary: "Train with GRPO (RARL) or SFT from a config file; --dry-run checks everything and estimates memory/time", load: () => import("./train") }),
  lazyCommand({ name: "generate", summary: "Generate completions for one prompt with a Qwen2-VL folder and optional LoRA adapter", load: () => import("./generate") }),
  lazyCommand({ name: "eval", summary: "Answer every sample with the inference prompt and write predictions JSONL (--judge scores them)", load: () => import("./eval") }),
];
commandModules.push(helpCommand); // keep last
