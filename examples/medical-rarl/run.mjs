#!/usr/bin/env node
// The paper's Tables 3 and 6 with the real Qwen2-VL-2B-Instruct and the real datasets, through the `rarl` CLI:
//   1. train SFT (sft.json), RL + LoRA (rl-lora.json, Table 3) and RARL + prompt diversity (config.json, Table 6);
//   2. answer every `evalData` set of config.json with each adapter, reasoning and non-reasoning prompting;
//   3. judge the answers (--judge, default "offline"; "openai:gpt-4o-mini" / "gemini:gemini-1.5-flash" as in the paper)
//      and print one Table-3/6-style report per prompting mode.
// Finished stages are skipped and training resumes from its last checkpoint, so the script can be re-run after an
// interruption. Check everything first with:  node examples/medical-rarl/run.mjs --dry-run
//
//   node examples/medical-rarl/run.mjs [--dry-run] [--judge offline|openai:MODEL|gemini:MODEL] [--only sft,rl-lora,rarl]
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { continueFlags, option, rarlRunner, repo } from "../lib/rarl-cli.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, dflt) => option(args, name, dflt);
const dry = args.includes("--dry-run");
const judge = opt("--judge", "offline");
const RUNS = [
  { key: "sft", title: "SFT", config: "sft.json" },
  { key: "rl-lora", title: "RL + LoRA", config: "rl-lora.json" },
  { key: "rarl", title: "RARL + prompt diversity", config: "config.json" },
].filter((r) => opt("--only", "sft,rl-lora,rarl").split(",").includes(r.key));
const rel = (p) => path.relative(repo, path.resolve(here, p));
const rarl = rarlRunner("medical-rarl", "fix it and run again (finished stages are skipped)");

const main = JSON.parse(fs.readFileSync(path.join(here, "config.json"), "utf8"));
for (const r of RUNS) {
  const cfg = JSON.parse(fs.readFileSync(path.join(here, r.config), "utf8"));
  r.out = path.resolve(here, cfg.out);
  if (dry) {
    rarl(["train", "--config", rel(r.config), "--dry-run"]);
    continue;
  }
  if (fs.existsSync(path.join(r.out, "DONE"))) continue;
  rarl(["train", "--config", rel(r.config), ...continueFlags(r.out)]);
  fs.writeFileSync(path.join(r.out, "DONE"), "");
}
if (dry) process.exit(0);

const model = rel(main.model.path);
for (const prompt of ["reasoning", "non-reasoning"]) {
  const sections = [];
  for (const r of RUNS) {
    const judged = [];
    for (const d of main.evalData) {
      const slug = d.name.toLowerCase().replace(/[^a-z0-9]+/g, "-");
      const preds = path.join(r.out, "eval", `${slug}.${prompt}.jsonl`);
      const results = preds.replace(/\.jsonl$/, ".judged.jsonl");
      if (!fs.existsSync(results)) {
        fs.mkdirSync(path.dirname(preds), { recursive: true });
        const data = `${d.format}:${rel(d.path)}`;
        rarl(["eval", "--model", model, "--adapter", path.relative(repo, path.join(r.out, "adapter")), "--data", data, ...(d.split ? ["--split", d.split] : []), "--prompt", prompt, "--dataset", d.name, "--out", path.relative(repo, preds), "--judge", judge, "--judge-out", path.relative(repo, results), "--quiet"]);
      }
      judged.push(path.relative(repo, results));
    }
    sections.push("--section", `${r.title}=${judged.join(",")}`);
  }
  rarl(["report", ...sections, "--title", `Medical VQA, ${prompt} prompting (judge: ${judge})`, "--out", rel(`runs/report.${prompt}.md`)]);
}
