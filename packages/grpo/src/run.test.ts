import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fixturesDir, openSafetensors } from "@rarl/core";
import { synthesize } from "@rarl/datasets";
import { loadQwen2VL } from "@rarl/model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readMetrics } from "./metrics";
import { runTrain } from "./run";

const EXAMPLES = fileURLToPath(new URL("../examples", import.meta.url));
const FIXTURE = path.join(fixturesDir(), "qwen2vl-tiny");

let tmp: string;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-run-"));
  await synthesize(path.join(tmp, "synth"), { n: 6, size: 56, seed: 2 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The shipped example config, pointed at this test's synthetic set. */
function example(name: string): Record<string, any> {
  const cfg = JSON.parse(fs.readFileSync(path.join(EXAMPLES, name), "utf8"));
  cfg.model.path = FIXTURE;
  cfg.data.path = path.join(tmp, "synth", "samples.jsonl");
  cfg.progress = false;
  if (cfg.rewards?.tokenizer) cfg.rewards.tokenizer = path.join(FIXTURE, "tokenizer.json");
  return cfg;
}

describe("runTrain with the tiny Qwen2-VL on the synthetic set (shipped example configs)", () => {
  it("GRPO: examples/grpo-tiny.json runs 2 steps with the paper's rewards and writes a PEFT adapter", async () => {
    const cfg = example("grpo-tiny.json");
    cfg.maxCompletionLength = 6;
    const res = await runTrain({ config: cfg, out: path.join(tmp, "grpo"), maxSteps: 2, handleSigint: false });
    expect(res.reason).toBe("completed");
    const m = readMetrics(res.runDir);
    expect(m.map((r) => r.step)).toEqual([1, 2]);
    for (const k of ["rewards/format/mean", "rewards/length/mean", "rewards/accuracy/mean", "rewards/reasoning/mean", "kl", "gradNorm"]) expect(m[1]).toHaveProperty(k);
    const files = fs.readdirSync(res.adapterDir!).sort();
    expect(files).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
  });

  it("SFT: examples/sft-tiny.json runs 1 step on <think>/<answer> targets", async () => {
    const res = await runTrain({ config: example("sft-tiny.json"), out: path.join(tmp, "sft"), maxSteps: 1, handleSigint: false });
    const m = readMetrics(res.runDir);
    expect(m).toHaveLength(1);
    expect(m[0].loss).toBeGreaterThan(5); // an untrained 152k-vocab model: NLL near ln(151936) ≈ 11.9
    expect(m[0].loss).toBeLessThan(20);
  });

  it("full SFT: trains every decoder Linear and RMSNorm and writes a complete model folder that loads back", async () => {
    const cfg = example("sft-tiny.json");
    cfg.finetune = "full";
    cfg.learningRate = 1e-3;
    const res = await runTrain({ config: cfg, out: path.join(tmp, "full"), maxSteps: 2, handleSigint: false });
    const m = readMetrics(res.runDir);
    expect(m).toHaveLength(2);
    const dir = res.adapterDir!;
    for (const f of ["config.json", "tokenizer.json", "preprocessor_config.json", "model.safetensors"]) expect(fs.existsSync(path.join(dir, f)), f).toBe(true);
    const saved = openSafetensors(path.join(dir, "model.safetensors"));
    const orig = openSafetensors(path.join(FIXTURE, "model.safetensors"));
    expect(new Set(saved.keys())).toEqual(new Set(orig.keys()));
    const q = "model.layers.0.self_attn.q_proj.weight";
    const changed = (saved.read(q).data as Float32Array).some((x, i) => x !== (orig.read(q).data as Float32Array)[i]);
    expect(changed).toBe(true); // trained
    for (const n of ["model.layers.0.input_layernorm.weight", "model.layers.1.post_attention_layernorm.weight", "model.norm.weight"]) {
      const a = saved.read(n).data as Float32Array;
      const b = orig.read(n).data as Float32Array;
      expect(a.some((x, i) => x !== b[i]), n).toBe(true); // RMSNorm weights are trained too
    }
    expect(Array.from(saved.read("model.embed_tokens.weight").data as Float32Array).slice(0, 64)).toEqual(
      Array.from(orig.read("model.embed_tokens.weight").data as Float32Array).slice(0, 64),
    ); // frozen (tied embedding)
    const back = await loadQwen2VL(dir);
    expect(Array.from(back.model.namedLinears().get("model.layers.0.self_attn.q_proj")!.weight.dataSync())).toEqual(Array.from(saved.read(q).data as Float32Array));
    back.model.dispose();
  });
});
