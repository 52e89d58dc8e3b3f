/**
 * Demo steps that are not `rarl` subcommands: the random tiny model, the compact-reasoning data, the results table.
 * Run by run.mjs as `tsx examples/demo/steps.ts <step> ...`.
 */
import { compactSamplesFile, demoModelConfig, summarizeDemo, writeDemoModel, writeRandomCheckpoint } from "../../packages/cli/src/demo/index";

const [step, ...args] = process.argv.slice(2);
if (step === "init-model") {
  // init-model DIR TOKENIZER_DIR SEED [DATA_JSONL]: with DATA_JSONL, the vocabulary is cut down to the tokens of the
  // demo's prompts and targets (see packages/cli/src/demo/vocab.ts); without it, the full Qwen2-VL vocabulary.
  const [dir, tokenizerDir, seed, data] = args;
  if (data) {
    const trimmed = await writeDemoModel(dir, tokenizerDir, data, Number(seed ?? 0));
    process.stderr.write(`demo vocabulary: ${trimmed.size} ids (of 151,936), from the prompts and targets of ${data}\n`);
  } else writeRandomCheckpoint(dir, demoModelConfig(), { seed: Number(seed ?? 0), tokenizerDir });
} else if (step === "compact-data") {
  const n = compactSamplesFile(args[0], args[1]);
  process.stderr.write(`compact reasoning: ${n} samples -> ${args[1]}\n`);
} else if (step === "summary") {
  process.stdout.write(summarizeDemo(args[0], args[1], { seed: Number(args[2] ?? 1), judge: "offline (lexical F1, not an LLM judge)" }));
} else {
  process.stderr.write(`unknown step ${step}\n`);
  process.exit(2);
}
