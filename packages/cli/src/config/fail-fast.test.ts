import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it, vi } from "vitest";
import { runCli } from "../program";

// A bad config must fail before the trainer or the model code is even imported: these mocks make importing them fail loudly.
vi.mock("@rarl/grpo", () => {
  throw new Error("@rarl/grpo was imported");
});
vi.mock("@rarl/model", () => {
  throw new Error("@rarl/model was imported");
});

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-failfast-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

async function stderrOf(args: string[]): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const we = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => err.push(String(s)) > 0) as typeof process.stderr.write;
  try {
    return { code: await runCli(args), err: err.join("") };
  } finally {
    process.stderr.write = we;
  }
}

const good = { trainer: "grpo", model: { type: "toy" }, data: { format: "rarl", path: "data.jsonl" }, rewards: { rewards: [{ use: "format" }] } };

describe("rarl train fails fast on bad input, naming the field or file, without loading the trainer or the model", () => {
  it("unknown and mistyped keys, bad YAML, a missing config", async () => {
    let r = await stderrOf(["train", "--config", write("a.json", JSON.stringify({ ...good, numGeneration: 4 }))]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/a\.json: unknown field "numGeneration" \(did you mean "numGenerations"\?\)/);
    r = await stderrOf(["train", "--config", write("b.yaml", "trainer: grpo\nbeta: high\nmodel: {type: toy}\ndata: {format: rarl, path: d.jsonl}\nrewards: {rewards: [{use: format}]}\n")]);
    expect(r.err).toMatch(/b\.yaml: beta must be number/);
    r = await stderrOf(["train", "--config", write("c.yaml", "trainer: [grpo\n")]);
    expect(r.err).toMatch(/c\.yaml: cannot parse YAML/);
    r = await stderrOf(["train", "--config", path.join(tmp, "nope.json")]);
    expect(r.err).toMatch(/cannot read config .*nope\.json/);
    r = await stderrOf(["train", "--config", write("d.json", JSON.stringify(good)), "--set", "model.lora.rank=4"]);
    expect(r.err).toMatch(/unknown field "model\.lora\.rank"/);
  });

  it("missing data, model, rewards and tokenizer paths are named with their field", async () => {
    const cfg = { ...good, model: { type: "qwen2vl", path: "models/none" }, rewards: "rewards/missing.json" };
    const r = await stderrOf(["train", "--config", write("e.json", JSON.stringify(cfg))]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/data\.path: .*data\.jsonl does not exist/);
    expect(r.err).toMatch(/model\.path: .*models\/none does not exist/);
    expect(r.err).toMatch(/rewards: .*rewards\/missing\.json does not exist/);
    fs.writeFileSync(path.join(tmp, "data.jsonl"), "");
    const r2 = await stderrOf(["train", "--config", write("f.json", JSON.stringify({ ...good, rewards: { rewards: [{ use: "length" }], tokenizer: "tok/tokenizer.json" } }))]);
    expect(r2.err).toMatch(/rewards\.tokenizer: .*tok\/tokenizer\.json does not exist/);
  });

  it("spawned `rarl train` with a bad config exits 1 naming the field (wall time printed, not asserted)", () => {
    const bad = write("spawn.json", JSON.stringify({ ...good, betta: 0.1 }));
    const t0 = performance.now();
    const r = spawnSync(process.execPath, ["--import", "tsx", path.join(REPO, "packages/cli/src/bin.ts"), "train", "--config", bad], {
      cwd: REPO,
      encoding: "utf8",
      env: { ...process.env, TSX_TSCONFIG_PATH: path.join(REPO, "packages/cli/tsconfig.json") },
    });
    const ms = performance.now() - t0;
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/spawn\.json: unknown field "betta" \(did you mean "beta"\?\)/);
    console.info(`spawned bad-config failure: ${ms.toFixed(0)} ms wall (tsx from source; see README for dist timings)`);
  });
});
