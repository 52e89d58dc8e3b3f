import fs from "node:fs";
import { writeFileAtomic } from "@rarl/core";
import { buildPrompt, NON_REASONING, REASONING } from "@rarl/prompts";
import type { Command } from "commander";
import { generateAnswers, loadEvalModel, splitThinkAnswer } from "../eval/run-eval";
import { intArg, numArg } from "./args";

/** `rarl generate`: completions for one prompt (text + optional image) from a model folder (+ adapter). */
export function register(program: Command): void {
  program
    .command("generate")
    .description("Generate completions for one prompt (text + optional image) with a Qwen2-VL folder and optional LoRA adapter")
    .requiredOption("--model <dir>", "Qwen2-VL model folder (Hugging Face layout)")
    .option("--adapter <dir>", "PEFT LoRA adapter folder")
    .requiredOption("--prompt <text>", "the user's question")
    .option("--image <file>", "image file (PNG/JPEG)")
    .option("--system <mode>", "system prompt: reasoning | non-reasoning (§3.3) | none", "reasoning")
    .option("-n, --num <n>", "number of completions", intArg("num"), 1)
    .option("--max-new-tokens <n>", "max new tokens", intArg("max-new-tokens"), 128)
    .option("--sample", "sample (default greedy; implied by -n > 1)")
    .option("--temperature <t>", "sampling temperature", numArg("temperature"), 1)
    .option("--top-p <p>", "nucleus sampling", numArg("top-p"), 1)
    .option("--top-k <k>", "top-k sampling (0: off)", intArg("top-k", 0), 0)
    .option("--seed <n>", "sampling seed", intArg("seed", 0), 0)
    .option("--json", "print one JSON object per completion {text, reasoning, answer}")
    .option("--out <file>", "also write the completions as JSONL")
    .action(async (o) => {
      if (o.image && !fs.existsSync(o.image)) throw new Error(`--image ${o.image}: file not found`);
      if (!["reasoning", "non-reasoning", "none"].includes(o.system)) throw new Error(`--system must be reasoning, non-reasoning or none, got "${o.system}"`);
      const m = await loadEvalModel(o.model, o.adapter);
      try {
        const template = o.system === "non-reasoning" ? NON_REASONING : REASONING;
        const messages = buildPrompt({ id: "prompt", question: o.prompt }, template, { system: o.system === "none" ? null : undefined, imageCount: o.image ? 1 : 0 });
        const prompts = Array.from({ length: o.num }, () => ({ messages, images: o.image ? [o.image] : undefined }));
        const doSample = Boolean(o.sample) || o.num > 1;
        const texts = await generateAnswers(m, prompts, { batchSize: o.num, maxNewTokens: o.maxNewTokens, doSample, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed });
        const rows = texts.map((text) => ({ text, ...splitThinkAnswer(text) }));
        for (const r of rows) process.stdout.write(o.json ? `${JSON.stringify(r)}\n` : `${r.text}\n${rows.length > 1 ? "---\n" : ""}`);
        if (o.out) writeFileAtomic(o.out, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
      } finally {
        m.dispose();
      }
    });
}
