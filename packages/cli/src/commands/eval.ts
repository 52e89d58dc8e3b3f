import path from "node:path";
import { runJudge } from "@rarl/judge";
import type { Command } from "commander";
import { runEvalWithHeadroom } from "../eval/run-eval";
import { intArg, numArg } from "./args";
import { checkOutputFile } from "./outputs";
import { judgeResultsReport } from "./report";

/** `rarl eval`: answers a dataset with a model (+ adapter) and writes the judge's predictions JSONL; `--judge` scores it. */
export function register(program: Command): void {
  program
    .command("eval")
    .description("Answer every sample with the §3.3 inference prompt and write predictions JSONL (the judge's input); --judge scores them and prints the report")
    .requiredOption("--model <dir>", "Qwen2-VL model folder (Hugging Face layout)")
    .option("--adapter <dir>", "PEFT LoRA adapter folder")
    .requiredOption("--data <format:path>", "dataset, e.g. rarl:data/samples.jsonl (formats as in `rarl data`)")
    .option("--prompt <mode>", "reasoning | non-reasoning (paper §3.3), or a training template: explanation-required | short-form | open-ended", "reasoning")
    .option("--split <name>", "keep only this split (e.g. test)")
    .option("--limit <n>", "first N samples", intArg("limit"))
    .requiredOption("--out <file>", "predictions JSONL")
    .option("--dataset <name>", "dataset name in the records (default: the samples' source)")
    .option("--batch-size <n>", "prompts per generation batch", intArg("batch-size"), 16)
    .option("--max-new-tokens <n>", "max new tokens", intArg("max-new-tokens"), 128)
    .option("--sample", "sample instead of greedy decoding")
    .option("--temperature <t>", "sampling temperature (with --sample or --samples)", numArg("temperature"))
    .option("--top-k <k>", "sampling: keep the k most likely tokens (GRPO's topK)", intArg("top-k"))
    .option("--top-p <p>", "sampling: nucleus mass", numArg("top-p"))
    .option("--suppress-tokens <ids>", 'ids never generated, comma-separated, or "vision" (the image/video pad and vision start/end ids, as GRPO suppresses; default when --samples is set)')
    .option("--samples <G>", "headroom: also draw G samples per question with the sampler above and report greedy accuracy, pass@1, pass@G, maj@G and the flippable share (offline judge)", intArg("samples"))
    .option("--headroom-out <file>", "--samples: write the headroom metrics and per-question verdicts as JSON")
    .option("--seed <n>", "sampling seed", intArg("seed", 0), 0)
    .option("--judge <name>", 'also judge the predictions: "offline", "openai:<model>" or "gemini:<model>"; results go to <out>.judged.jsonl')
    .option("--judge-out <file>", "results JSONL of --judge (default: <out without .jsonl>.judged.jsonl)")
    .option("--base-url <url>", "--judge: API base URL (any OpenAI-compatible server, or a Gemini endpoint)")
    .option("--api-key-env <name>", "--judge: environment variable holding the API key (default OPENAI_API_KEY, or GEMINI_API_KEY / GOOGLE_API_KEY)")
    .option("--quiet", "no progress lines")
    .action(async (o) => {
      checkOutputFile("--out", o.out, [{ flag: "--data", path: String(o.data).replace(/^[^:]*:/, "") }]);
      if (o.judgeOut) checkOutputFile("--judge-out", o.judgeOut, [{ flag: "--out", path: o.out }]);
      const t0 = performance.now();
      let last = -1;
      let suppress: number[] | "vision" | undefined;
      if (o.suppressTokens === "vision") suppress = "vision";
      else if (o.suppressTokens !== undefined) {
        suppress = String(o.suppressTokens)
          .split(",")
          .map((x) => {
            const n = Number(x.trim());
            if (!Number.isInteger(n) || n < 0) throw new Error(`--suppress-tokens: "${x}" is not a token id (or use "vision")`);
            return n;
          });
      }
      const { records: recs, headroom } = await runEvalWithHeadroom({
        model: o.model,
        adapter: o.adapter,
        data: o.data,
        prompt: o.prompt,
        split: o.split,
        limit: o.limit,
        out: o.out,
        dataset: o.dataset,
        batchSize: o.batchSize,
        maxNewTokens: o.maxNewTokens,
        doSample: Boolean(o.sample),
        temperature: o.temperature,
        topK: o.topK,
        topP: o.topP,
        suppressTokens: suppress,
        samples: o.samples,
        headroomOut: o.headroomOut,
        seed: o.seed,
        onProgress: o.quiet
          ? undefined
          : (done, total) => {
              const pct = Math.floor((100 * done) / total / 25) * 25;
              if (pct > last) {
                last = pct;
                process.stderr.write(`eval: ${done}/${total}\n`);
              }
            },
      });
      process.stderr.write(`rarl eval: ${recs.length} predictions in ${((performance.now() - t0) / 1000).toFixed(1)} s -> ${o.out}\n`);
      if (headroom) {
        const pc = (x: number) => `${(100 * x).toFixed(1)}%`;
        process.stdout.write(
          `headroom (n ${headroom.n}, G ${headroom.g}): greedy ${pc(headroom.greedy)}, pass@1 ${pc(headroom.pass_at_1)}, pass@G ${pc(headroom.pass_at_g)}, maj@G ${pc(headroom.maj_at_g)}, flippable ${pc(headroom.flippable)}, all-equal groups ${pc(headroom.all_equal)}\n`,
        );
      }
      if (o.judge) {
        const out = o.judgeOut ?? path.join(path.dirname(o.out), `${path.basename(o.out, ".jsonl")}.judged.jsonl`);
        const s = await runJudge({ judge: o.judge, predictions: o.out, out, baseURL: o.baseUrl, apiKeyEnv: o.apiKeyEnv });
        process.stderr.write(`rarl eval: judged ${s.scored}/${s.total} (${s.failed} failed) -> ${out}\n`);
        process.stdout.write(judgeResultsReport([out]));
      }
    });
}
