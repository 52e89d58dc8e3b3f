import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "@rarl/core";
import { APPENDIX_B_PROMPT_VERSION, type JudgePrompt, runJudge } from "@rarl/judge";
import type { Command } from "commander";
import { intArg, numArg } from "./args";
import { checkOutputFile } from "./outputs";

/** `rarl judge`: LLM-as-judge scoring of a predictions JSONL file (logic in @rarl/judge's runJudge). */
export function register(program: Command): void {
  program
    .command("judge")
    .description("Score predictions with an LLM judge (paper Appendix B prompt) or the offline judge; writes results JSONL as they arrive")
    .requiredOption("--predictions <file>", "predictions JSONL: {id, dataset, question, reference, prediction, reference_reasoning?, prediction_reasoning?}")
    .requiredOption("--judge <name>", 'judge: "openai:<model>" (any OpenAI-compatible server), "gemini:<model>" or "offline"')
    .requiredOption("--out <file>", "results JSONL (rewritten; cached verdicts cost nothing)")
    .option("--base-url <url>", "API base URL (vLLM/Ollama/llama.cpp/OpenAI-compatible, or a Gemini endpoint)")
    .option("--api-key-env <name>", "environment variable holding the API key (default OPENAI_API_KEY, or GEMINI_API_KEY / GOOGLE_API_KEY)")
    .option("--concurrency <n>", "samples judged at once", intArg("concurrency"), 8)
    .option("--timeout-ms <n>", "per-request timeout in ms", intArg("timeout-ms"), 60_000)
    .option("--max-attempts <n>", "requests per sample (429/5xx/timeouts/unusable replies are retried, repairs included)", intArg("max-attempts"), 6)
    .option("--retry-base-ms <n>", "base delay of the exponential backoff in ms", intArg("retry-base-ms"), 1000)
    .option("--temperature <t>", "sampling temperature", numArg("temperature"), 0)
    .option("--cache <dir>", "persistent cache directory (default: .rarl-judge-cache beside --out)")
    .option("--no-cache", "do not read or write the cache")
    .option("--retry-failed", "no effect (failures are never cached: a re-run asks again for every sample without a verdict)")
    .option("--prompt-file <file>", "custom prompt template ({{question}}, {{ground_truth}}, {{prediction}}, {{note}})")
    .option("--prompt-version <v>", "version of the custom prompt (part of the cache key; required with --prompt-file)")
    .option("--price-input <usd>", "USD per 1M input tokens for this judge's model (overrides the table)", numArg("price-input"))
    .option("--price-output <usd>", "USD per 1M output tokens for this judge's model (overrides the table)", numArg("price-output"))
    .option("--threshold <x>", "offline judge: similarity threshold for open answers and reasoning (default 0.5)", numArg("threshold"))
    .option("--encoder <dir>", "offline judge: BERT/RoBERTa folder for BERTScore (default: lexical F1)")
    .option("--summary <file>", "also write the run summary (counts, failures, requests, retries, tokens, cost) as JSON")
    .option("--quiet", "no progress lines")
    .option("--allow-failures", "exit 0 even when some samples end failed (default: exit 2 and print the count)")
    .action(async (o) => {
      checkOutputFile("--out", o.out, [{ flag: "--predictions", path: o.predictions }]);
      if (o.summary) checkOutputFile("--summary", o.summary, [{ flag: "--predictions", path: o.predictions }, { flag: "--out", path: o.out }]);
      let prompt: JudgePrompt | undefined;
      if (o.promptFile) {
        if (!o.promptVersion) throw new Error("--prompt-file needs --prompt-version (it goes into the cache key)");
        prompt = { template: fs.readFileSync(o.promptFile, "utf8"), version: o.promptVersion };
      } else if (o.promptVersion && o.promptVersion !== APPENDIX_B_PROMPT_VERSION) {
        throw new Error("--prompt-version without --prompt-file: the default prompt's version is fixed");
      }
      const model = String(o.judge).replace(/^[^:]*:/, "");
      const prices =
        o.priceInput !== undefined || o.priceOutput !== undefined ? { [model]: { inputPerM: o.priceInput ?? 0, outputPerM: o.priceOutput ?? 0 } } : undefined;
      const cacheDir = o.cache === false ? undefined : typeof o.cache === "string" ? o.cache : path.join(path.dirname(path.resolve(o.out)), ".rarl-judge-cache");
      let lastPct = -1;
      const summary = await runJudge({
        judge: o.judge,
        predictions: o.predictions,
        out: o.out,
        baseURL: o.baseUrl,
        apiKeyEnv: o.apiKeyEnv,
        concurrency: o.concurrency,
        timeoutMs: o.timeoutMs,
        temperature: o.temperature,
        retry: { maxAttempts: o.maxAttempts, baseDelayMs: o.retryBaseMs },
        cacheDir,
        retryCachedFailures: Boolean(o.retryFailed),
        prompt,
        prices,
        offline: { threshold: o.threshold, encoderDir: o.encoder },
        onResult: o.quiet
          ? undefined
          : (_r, done, total) => {
              const pct = Math.floor((100 * done) / total / 10) * 10;
              if (pct > lastPct) {
                lastPct = pct;
                process.stderr.write(`judge: ${done}/${total}\n`);
              }
            },
      });
      if (o.summary) writeFileAtomic(o.summary, `${JSON.stringify(summary, null, 2)}\n`);
      const s = summary.stats;
      const lines = [
        `judge ${summary.judge}: ${summary.total} samples, ${summary.scored} scored, ${summary.failed} failed, ${summary.lost} lost -> ${summary.out}`,
        `  requests ${s.requests} (retries ${JSON.stringify(s.retries)}, repairs ${s.repairs}), cache hits ${s.cacheHits}`,
        `  tokens in ${s.inputTokens} out ${s.outputTokens}, cost ${s.costUsd === null ? "unknown (no price for this model)" : `$${s.costUsd.toFixed(6)}`}`,
      ];
      if (summary.failed) lines.push(`  failures: ${JSON.stringify(summary.failures)}`);
      for (const f of summary.failedItems.slice(0, 20)) lines.push(`    ${f.id}: ${f.error}`);
      if (summary.failedItems.length > 20) lines.push(`    ... ${summary.failedItems.length - 20} more (see status "failed" in ${summary.out})`);
      process.stderr.write(`${lines.join("\n")}\n`);
      const unscored = summary.failed + summary.lost;
      if (unscored > 0) {
        process.stderr.write(
          `rarl judge: ${unscored} of ${summary.total} samples ended without a score (${summary.failed} failed, ${summary.lost} lost)` +
            `${o.allowFailures ? " (--allow-failures: exit 0)" : "; exit 2 (re-run to retry them, or pass --allow-failures)"}\n`,
        );
        if (!o.allowFailures) process.exitCode = 2;
      }
    });
}
