/**
 * Demo steps that are not `rarl` subcommands: the random tiny model, the compact-reasoning data, the results table.
 * Run by run.mjs as `tsx examples/demo/steps.ts <step> ...`.
 */
import { compactSamplesFile, demoModelConfig, summarizeDemo, writeRandomCheckpoint } from "../../packages/cli/src/demo/index";

const [step, ...args] = process.argv.slice(2);
if (step === "init-model") {
  const [dir, tokenizerDir, seed] = args;
  writeRandomCheckpoint(dir, demoModelConfig(), { seed: Number(seed ?? 0), tokenizerDir });
} else if (step === "compact-data") {
  const n = compactSamplesFile(args[0], args[1]);
  process.stderr.write(`compact reasoning: ${n} samples -> ${args[1]}\n`);
} else if (step === "summary") {
  process.stdout.write(summarizeDemo(args[0], args[1], { seed: Number(args[2] ?? 1), judge: "offline (lexical F1, not an LLM judge)" }));
} else {
  process.stderr.write(`unknown step ${step}\n`);
  process.exit(2);
}
