import * as tf from "@tensorflow/tfjs-core";
import { readToHost } from "@rarl/core";
import type { GRPOConfig } from "./config";
import { combineRewards, computeAdvantages, summary } from "./math/advantages";
import { completionMask, grpoLoss, grpoMetricsTensor, readGrpoMetrics } from "./math/loss";
import { GradAccumulator } from "./optim/adamw";
import { type HasId, type StepReport, TrainLoop } from "./loop";
import { type Completion, type GenerationBackend, localBackend, type Policy, type PreparedPrompt, type RewardScorer } from "./policy";

export interface GRPOTrainerOptions<E extends HasId, P, H extends PreparedPrompt> {
  config: GRPOConfig;
  policy: Policy<P, H>;
  examples: readonly E[];
  /** The prompt of `example` in `epoch` (wire @rarl/prompts' TemplateSampler here for prompt diversity). */
  buildPrompt: (example: E, epoch: number) => P;
  rewards: RewardScorer<E>;
  /** Default: the policy itself. */
  backend?: GenerationBackend<H>;
  runDir: string;
}

interface Rollout<E, H> {
  items: Array<{ prepared: H; completionIds: number[] }>;
  completions: Completion[];
  examples: E[];
  prepared: H[];
  T: number;
  mask: tf.Tensor2D;
  advantages: tf.Tensor1D;
  oldLogp: tf.Tensor2D | null;
  refLogp: tf.Tensor2D | null;
}

/**
 * GRPO (paper eq. 1-3, TRL semantics). One step: for each micro-batch, sample G completions per prompt, score
 * them, compute group advantages, old-policy (μ > 1) and reference (β > 0, adapter off) log-probs; then μ times:
 * gradients of the loss for every micro-batch, averaged, clipped, one AdamW update.
 */
export class GRPOTrainer<E extends HasId, P, H extends PreparedPrompt> extends TrainLoop<E, P, H> {
  private readonly backend: GenerationBackend<H>;

  constructor(private readonly o: GRPOTrainerOptions<E, P, H>) {
    super(o.config, o.policy, o.examples, o.runDir);
    this.backend = o.backend ?? localBackend(o.policy);
  }

  protected examplesPerStep(): number {
    return this.o.config.promptsPerStep * this.o.config.gradientAccumulationSteps;
  }

  protected updatesPerStep(): number {
    return this.o.config.numIterations;
  }

  /** Log-probs without gradient (old policy, reference), in chunks of backwardBatchSize rows. */
  private logprobsNoGrad(items: Array<{ prepared: H; completionIds: number[] }>, T: number): tf.Tensor2D {
    const c = this.o.config;
    const chunk = c.backwardBatchSize > 0 ? c.backwardBatchSize : items.length;
    if (chunk >= items.length) return this.policy.completionLogprobs(items, T, c.temperature);
    const parts: tf.Tensor2D[] = [];
    for (let s0 = 0; s0 < items.length; s0 += chunk) parts.push(this.policy.completionLogprobs(items.slice(s0, s0 + chunk), T, c.temperature));
    const out = tf.concat(parts, 0) as tf.Tensor2D;
    tf.dispose(parts);
    return out;
  }

  protected async runStep(micro: Array<Array<{ example: E; epoch: number }>>): Promise<StepReport> {
    const c = this.o.config;
    const G = c.numGenerations;
    const timing = { generation: 0, scoring: 0, logprobs: 0, backward: 0, optimizer: 0 };
    const rollouts: Array<Rollout<E, H>> = [];
    const allRewards: number[] = [];
    const components: Record<string, number[]> = {};
    const allAdv: number[] = [];
    const lengths: number[] = [];
    let truncated = 0;
    let zeroStd = 0;
    const samples: Array<Record<string, unknown>> = [];
    try {
      for (const mb of micro) {
        let t = performance.now();
        const prepared: H[] = [];
        const completions: Completion[] = [];
        const examples: E[] = [];
        for (const { example, epoch } of mb) {
          const h = await this.policy.prepare(this.o.buildPrompt(example, epoch));
          prepared.push(h);
          const comps = await this.backend.generate(h, {
            numSamples: G,
            maxNewTokens: c.maxCompletionLength,
            temperature: c.temperature,
            topP: c.topP,
            topK: c.topK,
            minP: c.minP,
            repetitionPenalty: c.repetitionPenalty,
            rng: this.rng.sampling,
          });
          for (const comp of comps) {
            completions.push(comp);
            examples.push(example);
          }
        }
        timing.generation += performance.now() - t;
        t = performance.now();
        const scored = await this.o.rewards(completions.map((comp, i) => ({ completion: comp.text, completionIds: comp.ids, example: examples[i] })));
        const total = combineRewards(scored, c.rewardWeights);
        const adv = computeAdvantages(total, G, c.scaleRewards);
        timing.scoring += performance.now() - t;
        for (const [k, v] of Object.entries(scored)) {
          components[k] ??= [];
          components[k].push(...v);
        }
        allRewards.push(...total);
        allAdv.push(...adv.advantages);
        zeroStd += adv.fracZeroStdGroups * mb.length;
        const items = completions.map((comp, i) => ({ prepared: prepared[Math.floor(i / G)], completionIds: comp.ids }));
        const T = Math.max(1, ...completions.map((x) => x.ids.length));
        for (const comp of completions) {
          lengths.push(comp.ids.length);
          if (comp.finishReason === "length") truncated++;
        }
        if (samples.length < 4) {
          for (const [i, comp] of completions.slice(0, 2).entries()) {
            const parts = Object.fromEntries(Object.entries(scored).map(([k, v]) => [`reward/${k}`, v[i]]));
            samples.push({ example: examples[i].id, completion: comp.text, finishReason: comp.finishReason, reward: total[i], advantage: adv.advantages[i], ...parts });
          }
        }
        const mask = tf.tensor2d(
          completionMask(
            completions.map((x) => x.ids.length),
            T,
            completions.map((x) => x.finishReason === "length"),
            c.maskTruncatedCompletions,
          ),
          [completions.length, T],
        );
        t = performance.now();
        const oldLogp = c.numIterations > 1 ? this.logprobsNoGrad(items, T) : null;
        const refLogp = c.beta > 0 ? this.policy.withAdapterDisabled(() => this.logprobsNoGrad(items, T)) : null;
        timing.logprobs += performance.now() - t;
        rollouts.push({ items, completions, examples, prepared, T, mask, advantages: tf.tensor1d(Float32Array.from(adv.advantages)), oldLogp, refLogp });
      }

      let lastLoss = 0;
      let gradNorm = 0;
      let lr = 0;
      let m = { klMean: 0, clipLow: 0, clipHigh: 0, clipRegion: 0, ratioMean: 1 };
      for (let iter = 0; iter < c.numIterations; iter++) {
        const acc = new GradAccumulator();
        let lossSum = 0;
        const mSum = [0, 0, 0, 0, 0];
        let t = performance.now();
        for (const r of rollouts) {
          const B = r.items.length;
          const maskData = await r.mask.data();
          let tokens = 0;
          for (const x of maskData) tokens += x;
          const totals = { sequences: B, tokens };
          const chunk = c.backwardBatchSize > 0 ? Math.min(c.backwardBatchSize, B) : B;
          let sums: tf.Tensor[] | null = null;
          for (let s0 = 0; s0 < B; s0 += chunk) {
            const n = Math.min(chunk, B - s0);
            const whole = n === B;
            const sl = (t: tf.Tensor2D | null) => (t && !whole ? (tf.slice(t, [s0, 0], [n, r.T]) as tf.Tensor2D) : t);
            const mask = sl(r.mask) as tf.Tensor2D;
            const oldLogp = sl(r.oldLogp);
            const refLogp = sl(r.refLogp);
            const adv = whole ? r.advantages : (tf.slice(r.advantages, [s0], [n]) as tf.Tensor1D);
            const items = whole ? r.items : r.items.slice(s0, s0 + n);
            let chunkTokens = 0;
            for (let i = s0 * r.T; i < (s0 + n) * r.T; i++) chunkTokens += maskData[i];
            let metricsT: tf.Tensor1D | null = null;
            const { value, grads } = tf.variableGrads(() => {
              const logp = this.policy.completionLogprobs(items, r.T, c.temperature);
              const inp = { logp, oldLogp, refLogp, advantages: adv, mask };
              metricsT = tf.keep(grpoMetricsTensor(inp, { epsilonLow: c.epsilon, epsilonHigh: c.epsilonHigh ?? undefined }));
              return grpoLoss(inp, {
                beta: c.beta,
                epsilonLow: c.epsilon,
                epsilonHigh: c.epsilonHigh ?? undefined,
                lossType: c.lossType,
                maxCompletionLength: c.maxCompletionLength,
                totals: whole ? undefined : totals,
              });
            }, this.variables);
            if (!whole) tf.dispose([mask, adv, ...(oldLogp ? [oldLogp] : []), ...(refLogp ? [refLogp] : [])]);
            lossSum += (await value.data())[0];
            value.dispose();
            await readToHost([metricsT!]);
            const mm = readGrpoMetrics(metricsT!);
            (metricsT as tf.Tensor | null)?.dispose();
            const w = tokens > 0 ? chunkTokens / tokens : n / B;
            [mm.klMean, mm.clipLow, mm.clipHigh, mm.clipRegion, mm.ratioMean].forEach((x, i) => {
              mSum[i] += x * w;
            });
            const g = this.variables.map((v) => grads[v.name]);
            if (!sums) sums = g;
            else {
              const prev: tf.Tensor[] = sums;
              sums = prev.map((x, i) => tf.add(x, g[i]));
              tf.dispose([...prev, ...g]);
            }
          }
          acc.add(sums!);
        }
        const n = rollouts.length;
        lastLoss = lossSum / n;
        m = { klMean: mSum[0] / n, clipLow: mSum[1] / n, clipHigh: mSum[2] / n, clipRegion: mSum[3] / n, ratioMean: mSum[4] / n };
        timing.backward += performance.now() - t;
        t = performance.now();
        const grads = acc.mean();
        ({ gradNorm, lr } = await this.applyUpdate(grads, lastLoss));
        if (this.backend.syncWeights) await this.backend.syncWeights(this.policy, this.updates);
        timing.optimizer += performance.now() - t;
      }

      const rewardStats = summary(allRewards);
      const advStats = summary(allAdv);
      const lenStats = summary(lengths);
      const metrics: Record<string, unknown> = {
        reward: rewardStats.mean,
        rewardStd: rewardStats.std,
        ...Object.fromEntries(Object.entries(components).flatMap(([k, v]) => {
          const s = summary(v);
          return [
            [`rewards/${k}/mean`, s.mean],
            [`rewards/${k}/std`, s.std],
          ];
        })),
        advantageMean: advStats.mean,
        advantageStd: advStats.std,
        advantageMin: advStats.min,
        advantageMax: advStats.max,
        fracRewardZeroStd: zeroStd / micro.reduce((a, b) => a + b.length, 0),
        kl: m.klMean,
        clipRatioLow: m.clipLow,
        clipRatioHigh: m.clipHigh,
        clipRatioRegion: m.clipRegion,
        completionLengthMean: lenStats.mean,
        completionLengthMax: lenStats.max,
        truncatedFrac: truncated / lengths.length,
        lr,
        gradNorm,
        timing: Object.fromEntries(Object.entries(timing).map(([k, v]) => [k, v / 1000])),
      };
      return { loss: lastLoss, tokens: lengths.reduce((a, b) => a + b, 0), metrics, samples };
    } finally {
      for (const r of rollouts) {
        tf.dispose([r.mask, r.advantages, ...(r.oldLogp ? [r.oldLogp] : []), ...(r.refLogp ? [r.refLogp] : [])]);
        for (const h of r.prepared) this.policy.release(h);
      }
    }
  }
}
