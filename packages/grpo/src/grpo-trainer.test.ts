import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listCheckpoints } from "./checkpoint";
import { GRPO_DEFAULTS, type GRPOConfig, resolveRewardWeights, resolveTrainConfig } from "./config";
import { NonFiniteError, type TrainConfigError } from "./errors";
import { GRPOTrainer } from "./grpo-trainer";
import { readMetrics } from "./metrics";
import type { RewardScorer } from "./policy";
import { ToyPolicy, type ToyPrompt } from "./testing/toy-policy";

const TARGET = 3;
const examples = Array.from({ length: 6 }, (_, i) => ({ id: `ex${i}`, first: i % 5 }));
type Ex = (typeof examples)[number];
const buildPrompt = (e: Ex): ToyPrompt => ({ id: e.id, ids: [e.first] });
/** Easy-to-learn reward: the share of completion tokens that are TARGET, plus a constant "format" component. */
const rewards: RewardScorer<Ex> = async (items) => ({
  target: items.map((it) => (it.completionIds.length ? it.completionIds.filter((t) => t === TARGET).length / it.completionIds.length : 0)),
  format: items.map(() => 0.5),
});

let tmp: string;
beforeAll(async () => {
  await initBackend();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "grpo-test-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cfg(over: Partial<GRPOConfig>): GRPOConfig {
  return { ...GRPO_DEFAULTS, numGenerations: 8, promptsPerStep: 2, maxCompletionLength: 6, learningRate: 0.05, saveSteps: 5, progress: false, logCompletionsSteps: 5, ...over };
}

function trainer(c: GRPOConfig, runDir: string, policy = new ToyPolicy({ seed: 1 })) {
  return { policy, t: new GRPOTrainer({ config: c, policy, examples, buildPrompt, rewards, runDir }) };
}

describe("GRPOTrainer on a toy policy", () => {
  it("learns the toy task: mean reward rises by > 0.25 in 40 steps (fixed seed)", async () => {
    const { policy, t } = trainer(cfg({ maxSteps: 40, numIterations: 2, lrScheduler: "constant" }), path.join(tmp, "learn"));
    const res = await t.train({ handleSigint: false });
    const m = readMetrics(res.runDir);
    expect(m).toHaveLength(40);
    const first = m.slice(0, 5).reduce((a, r) => a + r["rewards/target/mean"], 0) / 5;
    const last = m.slice(-5).reduce((a, r) => a + r["rewards/target/mean"], 0) / 5;
    expect(last - first).toBeGreaterThan(0.25);
    // Every metric the issue asks for is in each line.
    for (const k of [
      "loss",
      "reward",
      "reward_std",
      "rewards/format/mean",
      "rewards/format/std",
      "rewards/target/mean",
      "rewards/target/std",
      "frac_reward_zero_std",
      "advantageMean",
      "advantageStd",
      "kl",
      "entropy",
      "clip_ratio/region_mean",
      "clip_ratio/low_mean",
      "clip_ratio/high_mean",
      "completions/mean_length",
      "completions/max_length",
      "completions/clipped_ratio",
      "lr",
      "gradNorm",
      "tokensPerSec",
      "stepTime",
      "numTensors",
      "numBytes",
    ]) {
      expect(m[39], k).toHaveProperty(k);
    }
    expect(m[39].kl).toBeGreaterThan(0); // the policy moved away from the reference
    expect(m[0].kl).toBeLessThan(m[39].kl / 10); // B = 0 at init: policy == reference until the first update
    expect(fs.existsSync(path.join(res.adapterDir!, "adapter_model.safetensors"))).toBe(true);
    expect(fs.existsSync(path.join(res.runDir, "samples.jsonl"))).toBe(true);
    expect(listCheckpoints(path.join(res.runDir, "checkpoints")).map((x) => x.step)).toEqual([30, 35, 40]);
    policy.dispose();
  });

  // One learning test per loss type / option of the TRL family, on the same toy task and seeds: the mean target
  // reward of the last 5 steps exceeds that of the first 5 by the stated margin.
  it.each([
    { name: "dapo", over: { lossType: "dapo" } },
    { name: "dr_grpo", over: { lossType: "dr_grpo" } },
    { name: "bnpo", over: { lossType: "bnpo" } },
    { name: "cispo (ε_max 5)", over: { lossType: "cispo", epsilonHigh: 5 } },
    { name: "GSPO (sequence level)", over: { importanceSamplingLevel: "sequence" } },
    { name: "clip-higher + δ (ε_high 0.28, δ 4)", over: { epsilonHigh: 0.28, delta: 4 } },
    { name: "top 20% entropy tokens", over: { topEntropyQuantile: 0.2 } },
    { name: "normalize_then_sum", over: { multiObjectiveAggregation: "normalize_then_sum" } },
  ] as Array<{ name: string; over: Partial<GRPOConfig> }>)("learns the toy task with $name: mean reward rises by > 0.5 in 40 steps", async ({ name, over }) => {
    const { policy, t } = trainer(cfg({ maxSteps: 40, numIterations: 2, lrScheduler: "constant", saveSteps: 1000, ...over }), path.join(tmp, `learn-${name.replace(/\W+/g, "_")}`));
    const res = await t.train({ handleSigint: false });
    const m = readMetrics(res.runDir);
    const first = m.slice(0, 5).reduce((a, r) => a + r["rewards/target/mean"], 0) / 5;
    const last = m.slice(-5).reduce((a, r) => a + r["rewards/target/mean"], 0) / 5;
    expect(last - first, `${name}: ${first.toFixed(3)} -> ${last.toFixed(3)}`).toBeGreaterThan(0.5);
    if (over.lossType === "cispo") expect(m[39]).toHaveProperty("cispo_clip_ratio");
    else expect(m[39]).toHaveProperty("clip_ratio/region_mean");
    // The toy bigram's entropy depends on the previous token only (ties), so more than ρ of the tokens can be kept.
    if (over.topEntropyQuantile) expect(m[0].entropyKeptFrac).toBeLessThan(0.6);
    console.log(`learning ${name}: ${first.toFixed(3)} -> ${last.toFixed(3)}`);
    policy.dispose();
  });

  it("dapo normalises over the whole generation batch: gradient accumulation 2×1 prompts = 1×2 prompts (bnpo differs)", async () => {
    const weights = async (over: Partial<GRPOConfig>, name: string) => {
      const { policy, t } = trainer(cfg({ maxSteps: 2, numIterations: 1, saveSteps: 1000, maskTruncatedCompletions: false, ...over }), path.join(tmp, name));
      await t.train({ handleSigint: false });
      const w = policy.trainableVariables().flatMap((v) => Array.from(v.dataSync()));
      policy.dispose();
      return w;
    };
    const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));
    // Sampling order is the same either way (one RNG, prompts in the same order), so the completions are too.
    const dapoA = await weights({ lossType: "dapo", promptsPerStep: 1, gradientAccumulationSteps: 2 }, "dapo-ga2");
    const dapoB = await weights({ lossType: "dapo", promptsPerStep: 2, gradientAccumulationSteps: 1 }, "dapo-ga1");
    expect(maxDiff(dapoA, dapoB)).toBeLessThan(1e-6);
    const bnpoA = await weights({ lossType: "bnpo", promptsPerStep: 1, gradientAccumulationSteps: 2 }, "bnpo-ga2");
    const bnpoB = await weights({ lossType: "bnpo", promptsPerStep: 2, gradientAccumulationSteps: 1 }, "bnpo-ga1");
    expect(maxDiff(bnpoA, bnpoB)).toBeGreaterThan(1e-5);
  });

  it.each(["wasm", "cpu"])("resume continues bit for bit on %s: weights at step 6 equal an uninterrupted run's", async (backend) => {
    const prev = tf.getBackend();
    await tf.setBackend(backend);
    const c = cfg({ maxSteps: 6, saveSteps: 3, numIterations: 2, weightDecay: 0.01, warmupSteps: 2, lrScheduler: "cosine", gradientAccumulationSteps: 2, promptsPerStep: 1 });
    const full = trainer(c, path.join(tmp, `full-${backend}`));
    await full.t.train({ handleSigint: false });
    const want = full.policy.trainableVariables().map((v) => Array.from(v.dataSync()));

    // Interrupted after step 4 (SIGINT-like stop request): checkpoint at 4, then a fresh process resumes.
    const dir = path.join(tmp, `resumed-${backend}`);
    const a = trainer(c, dir);
    const r1 = await a.t.train({ handleSigint: false, onStep: (rec) => rec.step === 4 && a.t.requestStop() });
    expect(r1.reason).toBe("interrupted");
    expect(r1.steps).toBe(4);
    a.policy.dispose();
    const b = trainer(c, dir, new ToyPolicy({ seed: 1, loraSeed: 99 })); // different LoRA init: everything must come from the checkpoint
    const r2 = await b.t.train({ resume: true, handleSigint: false });
    expect(r2.steps).toBe(6);
    const got = b.policy.trainableVariables().map((v) => Array.from(v.dataSync()));
    expect(got).toEqual(want);
    expect(readMetrics(dir).map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(readMetrics(dir).map((r) => r.loss)).toEqual(readMetrics(path.join(tmp, `full-${backend}`)).map((r) => r.loss));
    full.policy.dispose();
    b.policy.dispose();
    await tf.setBackend(prev);
  });

  it.each([
    { name: "bnpo", over: { lossType: "bnpo" } },
    { name: "dapo + top 30% entropy (the quantile is the whole micro-batch's)", over: { lossType: "dapo", topEntropyQuantile: 0.3 } },
  ] as Array<{ name: string; over: Partial<GRPOConfig> }>)("backwardBatchSize (row chunks) gives the same update as one pass over all rows: $name", async ({ name, over }) => {
    const run = async (bbs: number) => {
      const dir = path.join(tmp, `bbs${bbs}-${name.replace(/\W+/g, "_")}`);
      const { policy, t } = trainer(cfg({ maxSteps: 3, numIterations: 2, backwardBatchSize: bbs, ...over }), dir);
      await t.train({ handleSigint: false });
      const w = policy.trainableVariables().flatMap((v) => Array.from(v.dataSync()));
      const m = readMetrics(dir);
      policy.dispose();
      return { w, m };
    };
    const a = await run(0);
    const b = await run(3); // 16 rows in chunks of 3, 3, 3, 3, 3, 1
    for (const [i, x] of a.w.entries()) expect(b.w[i]).toBeCloseTo(x, 5);
    a.m.forEach((r, i) => {
      expect(b.m[i].loss).toBeCloseTo(r.loss, 5);
      expect(b.m[i].kl).toBeCloseTo(r.kl, 5);
      expect(b.m[i]["clip_ratio/region_mean"]).toBeCloseTo(r["clip_ratio/region_mean"], 5);
      expect(b.m[i].entropy).toBeCloseTo(r.entropy, 5);
    });
  });

  it("uses a custom GenerationBackend and syncs it after every optimizer update", async () => {
    const policy = new ToyPolicy({ seed: 1 });
    const synced: number[] = [];
    let generateCalls = 0;
    const backend = {
      name: "counting",
      generate: (p: Parameters<ToyPolicy["generate"]>[0], o: Parameters<ToyPolicy["generate"]>[1]) => {
        generateCalls++;
        return policy.generate(p, o);
      },
      syncWeights: async (_p: unknown, update: number) => {
        synced.push(update);
      },
    };
    const t = new GRPOTrainer({ config: cfg({ maxSteps: 3, numIterations: 2 }), policy, examples, buildPrompt, rewards, backend, runDir: path.join(tmp, "backend") });
    await t.train({ handleSigint: false });
    expect(generateCalls).toBe(3 * 2); // 3 steps x 2 prompts
    expect(synced).toEqual([1, 2, 3, 4, 5, 6]); // 3 steps x μ = 2 updates
    policy.dispose();
  });

  it("SIGINT writes a checkpoint and stops after the current step", async () => {
    const { policy, t } = trainer(cfg({ maxSteps: 50, saveSteps: 100 }), path.join(tmp, "sigint"));
    const res = await t.train({ onStep: (rec) => rec.step === 2 && process.emit("SIGINT") });
    expect(res.reason).toBe("interrupted");
    expect(listCheckpoints(path.join(res.runDir, "checkpoints")).map((x) => x.step)).toEqual([2]);
    expect(process.listenerCount("SIGINT")).toBe(0);
    policy.dispose();
  });

  it("NaN in the loss stops with NonFiniteError and a checkpoint of the last good state", async () => {
    /** A policy whose log-probs turn NaN once poisoned (as an fp overflow would). */
    class Poisonable extends ToyPolicy {
      poisoned = false;
      override completionLogprobsWithEntropy(items: Parameters<ToyPolicy["completionLogprobs"]>[0], T: number): { logp: tf.Tensor2D; entropy: tf.Tensor2D } {
        const r = super.completionLogprobsWithEntropy(items, T);
        if (!this.poisoned) return r;
        const out = tf.mul(r.logp, Number.NaN) as tf.Tensor2D;
        r.logp.dispose();
        return { logp: out, entropy: r.entropy };
      }
    }
    const policy = new Poisonable({ seed: 1 });
    const runDir = path.join(tmp, "nan");
    const t = new GRPOTrainer({ config: cfg({ maxSteps: 10, beta: 0 }), policy, examples, buildPrompt, rewards, runDir });
    let before: number[][] = [];
    const err = await t
      .train({
        handleSigint: false,
        onStep: (rec) => {
          if (rec.step !== 2) return;
          policy.poisoned = true;
          before = policy.trainableVariables().map((v) => Array.from(v.dataSync()));
        },
      })
      .catch((e) => e);
    expect(err).toBeInstanceOf(NonFiniteError);
    expect(err.message).toMatch(/step 3: loss is NaN/);
    expect(fs.existsSync(err.details.checkpoint)).toBe(true);
    // The weights were not updated by the bad step, and the checkpoint resumes at step 2.
    expect(policy.trainableVariables().map((v) => Array.from(v.dataSync()))).toEqual(before);
    const st = JSON.parse(fs.readFileSync(path.join(err.details.checkpoint, "trainer_state.json"), "utf8"));
    expect(st.step).toBe(2);
    policy.dispose();
  });

  it("numTensors stays flat over 200 steps", async () => {
    const { policy, t } = trainer(cfg({ maxSteps: 200, saveSteps: 1000, numGenerations: 2, promptsPerStep: 1, maxCompletionLength: 3, numIterations: 2 }), path.join(tmp, "leak"));
    const counts: number[] = [];
    await t.train({ handleSigint: false, onStep: (rec) => counts.push(rec.numTensors as number) });
    expect(counts).toHaveLength(200);
    expect(counts[199]).toBe(counts[1]);
    expect(Math.max(...counts.slice(1))).toBe(counts[1]);
    policy.dispose();
  });
});

describe("resolveTrainConfig", () => {
  it("fills defaults and rejects unknown or out-of-range fields with the field name", () => {
    const c = resolveTrainConfig({ trainer: "grpo", beta: 0 }) as GRPOConfig;
    expect(c.beta).toBe(0);
    expect(c.epsilon).toBe(0.2);
    expect(c.saveSteps).toBe(100);
    expect(() => resolveTrainConfig({ trainer: "grpo", betta: 1 })).toThrow(/unknown field "betta"/);
    expect(() => resolveTrainConfig({ trainer: "grpo", numGenerations: 1 })).toThrow(/"numGenerations" must be an integer >= 2/);
    expect(() => resolveTrainConfig({ trainer: "grpo", lossType: "dapoo" })).toThrow(/"lossType" must be one of .*\(did you mean "dapo"\?\)/);
    expect(() => resolveTrainConfig({ trainer: "grpo", losType: "dapo" })).toThrow(/unknown field "losType" \(did you mean "lossType"\?\)/);
    expect(() => resolveTrainConfig({ trainer: "ppo" })).toThrow(/"trainer" must be/);
    expect(resolveTrainConfig({ trainer: "sft", model: {} }, ["model"]).trainer).toBe("sft");
  });
});

describe("GRPO config: the TRL loss family fields", () => {
  const err = (input: Record<string, unknown>) => {
    try {
      resolveTrainConfig({ trainer: "grpo", ...input });
    } catch (e) {
      return e as TrainConfigError;
    }
    throw new Error(`no error for ${JSON.stringify(input)}`);
  };

  it("defaults stay at the paper's values and every new field takes TRL's values", () => {
    const c = resolveTrainConfig({ trainer: "grpo" }) as GRPOConfig;
    expect([c.lossType, c.beta, c.epsilon, c.epsilonHigh, c.delta, c.importanceSamplingLevel, c.topEntropyQuantile, c.multiObjectiveAggregation, c.scaleRewards]).toEqual([
      "grpo",
      0.04,
      0.2,
      null,
      null,
      "token",
      1,
      "sum_then_normalize",
      "group",
    ]);
    expect([c.vllmImportanceSamplingCorrection, c.vllmImportanceSamplingMode, c.vllmImportanceSamplingClipMax, c.vllmImportanceSamplingClipMin, c.logCompletions]).toEqual([true, "sequence_mask", 3, null, false]);
    for (const lossType of ["grpo", "bnpo", "dr_grpo", "dapo"]) expect((resolveTrainConfig({ lossType }) as GRPOConfig).lossType).toBe(lossType);
    const gspo = resolveTrainConfig({ lossType: "cispo", epsilonHigh: 5, importanceSamplingLevel: "sequence", topEntropyQuantile: 0.2, delta: 4 }) as GRPOConfig;
    expect(gspo.importanceSamplingLevel).toBe("sequence");
  });

  it("names the field and suggests a fix for invalid values and combinations", () => {
    let e = err({ lossType: "cispo" });
    expect(e.details?.field).toBe("epsilonHigh");
    expect(e.message).toMatch(/cispo" needs epsilonHigh.*set "epsilonHigh": 5.0/);
    e = err({ delta: 1.2 });
    expect(e.details?.field).toBe("delta");
    expect(e.message).toMatch(/delta 1.2 must be > 1 \+ epsilon = 1.2; set "delta" above 1.2/);
    expect(err({ delta: 1.25, epsilonHigh: 0.28 }).message).toMatch(/> 1 \+ epsilonHigh = 1.28/);
    expect(err({ topEntropyQuantile: 0 }).message).toMatch(/"topEntropyQuantile" must be a number > 0 and <= 1, got 0; use 1 to keep every token, or the share to keep \(the 80\/20 paper uses 0.2\)/);
    expect(err({ topEntropyQuantile: 1.5 }).details?.field).toBe("topEntropyQuantile");
    expect(err({ importanceSamplingLevel: "seq" }).message).toMatch(/"importanceSamplingLevel" must be one of "token", "sequence"/);
    expect(err({ multiObjectiveAggregation: "normalize_then_summ" }).message).toMatch(/did you mean "normalize_then_sum"/);
    expect(err({ vllmImportanceSamplingMode: "token_truncat" }).message).toMatch(/did you mean "token_truncate"/);
    expect(err({ vllmImportanceSamplingClipMin: 4 }).details?.field).toBe("vllmImportanceSamplingClipMin");
    expect(err({ vllmImportanceSamplingClipMin: 3 }).message).toMatch(/3 must be below vllmImportanceSamplingClipMax 3/);
    // TRL's deprecated vllm_importance_sampling_cap replaces the maximum.
    expect((resolveTrainConfig({ vllmImportanceSamplingCap: 2 }) as GRPOConfig).vllmImportanceSamplingClipMax).toBe(2);
  });

  it("rewardWeights: an object by reward name or TRL's list, checked against the reward names", () => {
    expect(resolveRewardWeights({ b: 2 }, ["a", "b"], { a: 0.5 })).toEqual({ a: 0.5, b: 2 });
    expect(resolveRewardWeights([1, 3], ["a", "b"])).toEqual({ a: 1, b: 3 });
    expect(() => resolveRewardWeights([1], ["a", "b"])).toThrow(/"rewardWeights" has 1 weight\(s\) for 2 reward\(s\) \(a, b\)/);
    expect(() => resolveRewardWeights({ acuracy: 1 }, ["accuracy", "format"])).toThrow(/"rewardWeights.acuracy" names no reward .*did you mean "accuracy"/);
  });
});
