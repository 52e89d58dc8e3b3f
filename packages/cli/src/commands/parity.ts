import { type BackendName, initBackend } from "@rarl/core";
import { formatParityReport, runParity } from "@rarl/model";
import type { Command } from "commander";

/** `rarl parity <fixture-dir> [--tokenizer <path>] [--json] [--case <name...>] [--backend <name>]`. */
export function register(program: Command): void {
  program
    .command("parity")
    .description("Compare this implementation with Hugging Face reference outputs in a fixture folder (one row per case and field); exit 0 on PASS, 1 on FAIL")
    .argument("<fixture-dir>", "folder laid out like test-fixtures/qwen2vl-tiny (config, weights, reference/)")
    .option("--tokenizer <path>", "tokenizer.json to use instead of the fixture's")
    .option("--json", "print one JSON object {overall, cases} instead of the table")
    .option("--case <names...>", "run only these cases (processor, image_prompt, text_only, batch, completion, greedy, lora_*)")
    .option("--backend <name>", "tfjs backend (wasm, cpu, ...); RARL_BACKEND also works")
    .action(async (dir: string, opts: { tokenizer?: string; json?: boolean; case?: string[]; backend?: BackendName }) => {
      await initBackend(opts.backend ? { prefer: [opts.backend] } : {});
      const report = await runParity(dir, {
        tokenizerPath: opts.tokenizer,
        cases: opts.case,
        log: opts.json ? undefined : (m) => process.stderr.write(`${m}\n`),
      });
      process.stdout.write(`${opts.json ? JSON.stringify(report) : formatParityReport(report)}\n`);
      process.exitCode = report.overall === "PASS" ? 0 : 1;
    });
}
