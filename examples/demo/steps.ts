/**
 * Demo steps that are not `rarl` subcommands: the random tiny model, the compact-reasoning data, the eval suite of a
 * model and the experiment's statistics. Run by run.mjs as `tsx examples/demo/steps.ts <step> ...`.
 */
import {
  compactSamplesFile,
  demoModelConfig,
  evalSuite,
  formatExperimentTable,
  readExperimentAnswers,
  readHeadroom,
  summarizeDemo,
  summarizeExperiment,
  writeDemoModel,
  writeRandomCheckpoint,
} from "../../packages/cli/src/demo/index";
import { writeFileAtomic } from "../../packages/core/src/index";

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
} else if (step === "eval-suite") {
  // eval-suite MODEL ADAPTER|- SAMPLES_JSONL OUT_JSON MAX_NEW_TOKENS split:prompting[,split:prompting...]
  const [model, adapter, data, out, maxNew, runs] = args;
  const t0 = performance.now();
  const answers = await evalSuite({
    model,
    adapter: adapter === "-" ? undefined : adapter,
    data: `rarl:${data}`,
    out,
    maxNewTokens: Number(maxNew),
    runs: runs.split(",").map((r) => r.split(":") as [string, string]),
  });
  process.stderr.write(`eval suite: ${answers.length} answers in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${out}\n`);
} else if (step === "results") {
  // results EVAL_DIR HEADROOM_JSON OUT_JSON SEEDS_CSV FACTS_JSON
  const [evalDir, headroom, out, seeds, facts] = args;
  const r = summarizeExperiment(readExperimentAnswers(evalDir, seeds.split(",").map(Number)), readHeadroom(headroom), JSON.parse(facts ?? "{}"));
  writeFileAtomic(out, `${JSON.stringify(r, null, 2)}\n`);
  const pc = (x: number) => (100 * x).toFixed(1);
  const h = r.headroom as Record<string, number>;
  const lines = [formatExperimentTable(r)];
  lines.push(`headroom of the base (in-distribution, G ${h.g}): greedy ${pc(h.greedy)}%, pass@1 ${pc(h.pass_at_1)}%, pass@G ${pc(h.pass_at_g)}%, maj@G ${pc(h.maj_at_g)}%, flippable ${pc(h.flippable)}%`);
  for (const p of r.paired.filter((p) => p.prompting === "reasoning")) {
    const ci = p.ci95 as [number, number];
    lines.push(`${p.difference} ${p.split} (reasoning prompting): ${pc(p.mean as number)} points, 95% CI [${pc(ci[0])}, ${pc(ci[1])}]`);
  }
  for (const arm of ["sft", "rarl"]) {
    const m = (r.movement[arm] as Record<string, { mean: number; se: number }>)["in-distribution/reasoning"];
    if (m) lines.push(`movement ${arm}: ${pc(m.mean)}% ± ${pc(m.se)} of the base's in-distribution answers changed`);
  }
  lines.push(`verdict: ${r.verdict} (${r.verdict_why})`);
  process.stdout.write(`${lines.join("\n")}\n`);
} else if (step === "summary") {
  process.stdout.write(summarizeDemo(args[0], args[1], { seed: Number(args[2] ?? 1), judge: "offline (lexical F1, not an LLM judge)" }));
} else {
  process.stderr.write(`unknown step ${step}\n`);
  process.exit(2);
}
