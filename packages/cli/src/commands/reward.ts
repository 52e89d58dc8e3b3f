import { withOutputLock } from "@rarl/core";
import { scoreFile } from "@rarl/rewards";
import type { Command } from "commander";
import { checkOutputFile } from "./outputs";

/** `rarl reward`: scores existing completions offline with a rewards config (logic in @rarl/rewards' scoreFile). */
export function register(program: Command): void {
  program
    .command("reward")
    .description("Score existing completions with a rewards config (audit a reward set before training); adds each component and the weighted total")
    .requiredOption("--config <file>", 'rewards JSON: {"rewards": [{"use": "format", "weight": 1}, ...], "encoder": "<BERT folder>", "tokenizer": "<tokenizer.json>"}')
    .requiredOption("--input <file>", "completions JSONL: {id, completion, answer, reasoning?, answer_type: closed|open|choice, choices?}")
    .option("--out <file>", "scored JSONL (written atomically); default: stdout")
    .option("--quiet", "no summary on stderr")
    .action(async (o) => {
      if (o.out) checkOutputFile("--out", o.out, [{ flag: "--input", path: o.input }]);
      // One writer per output file (a second one is refused naming this process's PID).
      const score = () =>
        scoreFile(o.config, o.input, o.out, {
          onProgress: o.quiet ? undefined : (done, total) => process.stderr.write(`rarl reward: ${done}/${total}\n`),
        });
      const res = o.out ? await withOutputLock(o.out, score, { command: "rarl reward" }) : await score();
      if (!o.out) for (const l of res.lines) process.stdout.write(`${JSON.stringify(l)}\n`);
      if (!o.quiet) {
        const means = Object.entries(res.mean)
          .map(([k, v]) => `${k}=${v.toFixed(4)}`)
          .join(" ");
        process.stderr.write(`rarl reward: ${res.lines.length} completions scored; mean ${means}\n`);
      }
    });
}
