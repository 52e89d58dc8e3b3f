import * as tf from "@tensorflow/tfjs-core";
import { readToHost } from "@rarl/core";
import { type GRPOConfig, resolveRewardWeights } from "./config";
import { GenerationBackendError } from "./errors";
import { type HasId, type StepReport, TrainLoop } from "./loop";
import { aggregateAdvantages, summary } from "./math/advantages";
import { addStats, completionMask, entropyThreshold as entropyThresholdOf, grpoLossAndStats, statsToMetrics, vllmImportanceSamplingRatio } from "./math/loss";
import { GradAccumulator } from "./optim/adamw";
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
  /** vLLM importance-sampling correction, [B, T] or [B, 1]; null when not used. */
  isRatio: tf.Tensor2D | null;
  /** Counted tokens of this micro-batch. */
  tokens: number;
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

  /** On resume, the backend gets the restored weights at once (it would otherwise sample from the base model). */
  protected override async onTrainStart(): Promise<void> {
    if (this.updates > 0 && this.backend.syncWeights) await this.backend.syncWeights(this.policy, this.updates, true);
  }

  /** True when completions come from another engine whose log-probs must be corrected for (TRL: use_vllm). */
  private remoteSampling(): boolean {
    return this.backend.name !== "local";
  }

  /** Per-token log-probs and (when the policy can) entropies of the current policy, with gradient, in one pass. */
  private logprobsAndEntropy(items: Array<{ prepared: H; completionIds: number[] }>, T: number): { logp: tf.Tensor2D; entropy: tf.Tensor2D | null } {
    const c = this.o.config;
    if (this.policy.completionLogprobsWithEntropy) return this.policy.completionLogprobsWithEntropy(items, T, c.temperature);
    return { logp: this.policy.completionLogprobs(items, T, c.temperature), entropy: null };
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
    const terminatedLengths: number[] = [];
    let truncated = 0;
    let zeroStd = 0;
    const samples: Array<Record<string, unknown>> = [];
    const table: Array<Record<string, unknown>> = [];
    const remote = this.remoteSampling();
    const isStats = { min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY, sum: 0, n: 0 };
    const useIs = remote && c.vllmImportanceSamplingCorrection;
    if (c.topEntropyQuantile < 1 && !this.policy.completionLogprobsWithEntropy) {
      throw new GenerationBackendError("topEntropyQuantile < 1 needs a policy that computes per-token entropies (completionLogprobsWithEntropy)", { code: "GRPO_NO_ENTROPY", details: { field: "topEntropyQuantile" } });
    }
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
        const weights = resolveRewardWeights(c.rewardWeights, Object.keys(scored));
        const adv = aggregateAdvantages(scored, weights, G, c.scaleRewards, c.multiObjectiveAggregation);
        const total = adv.total;
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
          else terminatedLengths.push(comp.ids.length);
        }
        if (samples.length < 4) {
          for (const [i, comp] of completions.slice(0, 2).entries()) {
            const parts = Object.fromEntries(Object.entries(scored).map(([k, v]) => [`reward/${k}`, v[i]]));
            samples.push({ example: examples[i].id, completion: comp.text, finishReason: comp.finishReason, reward: total[i], advantage: adv.advantages[i], ...parts });
          }
        }
        if (c.logCompletions) {
          completions.forEach((comp, i) => {
            const h = prepared[Math.floor(i / G)];
            table.push({
              example: examples[i].id,
              prompt: h.promptText ?? h.promptIds.join(" "),
              completion: comp.text,
              finishReason: comp.finishReason,
              rewards: Object.fromEntries(Object.entries(scored).map(([k, v]) => [k, v[i]])),
              reward: total[i],
              advantage: adv.advantages[i],
            });
          });
        }
        const maskData = completionMask(
          completions.map((x) => x.ids.length),
          T,
          completions.map((x) => x.finishReason === "length"),
          c.maskTruncatedCompletions,
        );
        let tokens = 0;
        for (const x of maskData) tokens += x;
        const mask = tf.tensor2d(maskData, [completions.length, T]);
        t = performance.now();
        // TRL: with vLLM and its correction, the old log-probs are always computed (the sampler's differ).
        const oldLogp = c.numIterations > 1 || useIs ? this.logprobsNoGrad(items, T) : null;
        const refLogp = c.beta > 0 ? this.policy.withAdapterDisabled(() => this.logprobsNoGrad(items, T)) : null;
        let isRatio: tf.Tensor2D | null = null;
        if (useIs) {
          const samp = new Float32Array(completions.length * T);
          completions.forEach((comp, b) => {
            if (!comp.logprobs || comp.logprobs.length < comp.ids.length) {
              throw new GenerationBackendError(`backend "${this.backend.name}" returned no per-token logprobs for completion ${b}; vllmImportanceSamplingCorrection needs them (or set it false)`, {
                code: "GRPO_NO_SAMPLING_LOGPROBS",
                details: { field: "vllmImportanceSamplingCorrection" },
              });
            }
            samp.set(comp.logprobs.slice(0, comp.ids.length), b * T);
          });
          const sampT = tf.tensor2d(samp, [completions.length, T]);
          isRatio = vllmImportanceSamplingRatio(oldLogp!, sampT, mask, c.vllmImportanceSamplingMode, c.vllmImportanceSamplingClipMax, c.vllmImportanceSamplingClipMin);
          sampT.dispose();
          // TRL's sampling/importance_sampling_ratio/{min,mean,max} over counted tokens (token modes) or sequences.
          const v = await isRatio.data();
          const vals = isRatio.shape[1] === 1 ? Array.from(v) : Array.from(v).filter((_, i) => maskData[i] !== 0);
          if (vals.length) {
            isStats.min = Math.min(isStats.min, ...vals);
            isStats.max = Math.max(isStats.max, ...vals);
            isStats.sum += vals.reduce((a, b) => a + b, 0);
            isStats.n += vals.length;
          }
        }
        timing.logprobs += performance.now() - t;
        rollouts.push({ items, completions, examples, prepared, T, mask, advantages: tf.tensor1d(Float32Array.from(adv.advantages)), oldLogp, refLogp, isRatio, tokens });
      }

      // dapo / cispo: normalised by the completion tokens of the whole generation batch; the micro-batch
      // gradients are then summed (TRL's num_items_in_batch), the others averaged over micro-batches.
      const sumAcross = c.lossType === "dapo" || c.lossType === "cispo";
      const numItemsInBatch = rollouts.reduce((a, r) => a + r.tokens, 0);
      let lastLoss = 0;
      let gradNorm = 0;
      let lr = 0;
      const metricSums: Record<string, number> = {};
      let metricCount = 0;
      for (let iter = 0; iter < c.numIterations; iter++) {
        const acc = new GradAccumulator();
        let lossSum = 0;
        let t = performance.now();
        for (const r of rollouts) {
          const B = r.items.length;
          const totals = { sequences: B, tokens: r.tokens };
          const chunk = c.backwardBatchSize > 0 ? Math.min(c.backwardBatchSize, B) : B;
          let sums: tf.Tensor[] | null = null;
          let stats: Float64Array | null = null;
          // Entropy masking over row chunks: the quantile must be the whole micro-batch's (TRL's), so it is taken
          // from one extra forward pass without gradient over all rows first.
          let entropyThreshold: number | undefined;
          if (chunk < B && c.topEntropyQuantile < 1) {
            const ent = new Float32Array(B * r.T);
            for (let s0 = 0; s0 < B; s0 += chunk) {
              const { logp, entropy } = this.logprobsAndEntropy(r.items.slice(s0, s0 + chunk), r.T);
              ent.set(await entropy!.data(), s0 * r.T);
              tf.dispose([logp, entropy!]);
            }
            entropyThreshold = entropyThresholdOf(ent, await r.mask.data(), c.topEntropyQuantile);
          }
          for (let s0 = 0; s0 < B; s0 += chunk) {
            const n = Math.min(chunk, B - s0);
            const whole = n === B;
            const sl = (t: tf.Tensor2D | null) => (t && !whole ? (tf.slice(t, [s0, 0], [n, t.shape[1]]) as tf.Tensor2D) : t);
            const mask = sl(r.mask) as tf.Tensor2D;
            const oldLogp = sl(r.oldLogp);
            const refLogp = sl(r.refLogp);
            const isRatio = sl(r.isRatio);
            const adv = whole ? r.advantages : (tf.slice(r.advantages, [s0], [n]) as tf.Tensor1D);
            const items = whole ? r.items : r.items.slice(s0, s0 + n);
            let statsT: tf.Tensor1D | null = null;
            const { value, grads } = tf.variableGrads(() => {
              const { logp, entropy } = this.logprobsAndEntropy(items, r.T);
              const out = grpoLossAndStats(
                { logp, oldLogp, refLogp, advantages: adv, mask, entropy, importanceSamplingRatio: isRatio },
                {
                  beta: c.beta,
                  epsilonLow: c.epsilon,
                  epsilonHigh: c.epsilonHigh ?? undefined,
                  delta: c.delta,
                  lossType: c.lossType,
                  importanceSamplingLevel: c.importanceSamplingLevel,
                  topEntropyQuantile: c.topEntropyQuantile,
                  maxCompletionLength: c.maxCompletionLength,
                  totals: whole ? undefined : totals,
                  numItemsInBatch: sumAcross ? numItemsInBatch : undefined,
                  entropyThreshold,
                },
              );
              statsT = tf.keep(out.stats);
              if (entropy) entropy.dispose();
              return out.loss;
            }, this.variables);
            if (!whole) tf.dispose([mask, adv, ...[oldLogp, refLogp, isRatio].filter((x): x is tf.Tensor2D => x !== null)]);
            lossSum += (await value.data())[0];
            value.dispose();
            stats = addStats(stats, await (statsT as unknown as tf.Tensor1D).data());
            (statsT as tf.Tensor | null)?.dispose();
            const g = this.variables.map((v) => grads[v.name]);
            if (!sums) sums = g;
            else {
              const prev: tf.Tensor[] = sums;
              sums = prev.map((x, i) => tf.add(x, g[i]));
              tf.dispose([...prev, ...g]);
            }
          }
          acc.add(sums!);
          // TRL logs each micro-batch's means and averages them over the logging window.
          const mm = statsToMetrics(stats!);
          const named: Record<string, number> = {
            kl: mm.klMean,
            entropy: mm.entropy,
            ratioMean: mm.ratioMean,
            entropyKeptFrac: mm.entropyKept,
            ...(c.lossType === "cispo"
              ? { cispo_clip_ratio: mm.cispoClip }
              : { "clip_ratio/low_mean": mm.clipLow, "clip_ratio/high_mean": mm.clipHigh, "clip_ratio/region_mean": mm.clipRegion }),
          };
          for (const [k, v] of Object.entries(named)) metricSums[k] = (metricSums[k] ?? 0) + v;
          metricCount++;
        }
        const n = rollouts.length;
        lastLoss = sumAcross ? lossSum : lossSum / n;
        timing.backward += performance.now() - t;
        t = performance.now();
        const grads = sumAcross ? acc.sum() : acc.mean();
        ({ gradNorm, lr } = await this.applyUpdate(grads, lastLoss));
        if (this.backend.syncWeights && !this.fatalAfterStep) {
          // A sync that fails after the backend's retries: finish and checkpoint this step, then stop (the loop).
          try {
            await this.backend.syncWeights(this.policy, this.updates);
          } catch (e) {
            if (!(e instanceof GenerationBackendError)) throw e;
            this.fatalAfterStep = e;
          }
        }
        timing.optimizer += performance.now() - t;
      }

      const rewardStats = summary(allRewards);
      const advStats = summary(allAdv);
      const lenStats = summary(lengths);
      const termStats = summary(terminatedLengths);
      const lossMetrics = Object.fromEntries(Object.entries(metricSums).map(([k, v]) => [k, v / metricCount]));
      if (Number.isNaN(lossMetrics.entropy)) delete lossMetrics.entropy;
      const metrics: Record<string, unknown> = {
        reward: rewardStats.mean,
        reward_std: unbiased(allRewards),
        ...Object.fromEntries(
          Object.entries(components).flatMap(([k, v]) => {
            const s = summary(v);
            return [
              [`rewards/${k}/mean`, s.mean],
              [`rewards/${k}/std`, unbiased(v)],
            ];
          }),
        ),
        advantageMean: advStats.mean,
        advantageStd: advStats.std,
        advantageMin: advStats.min,
        advantageMax: advStats.max,
        frac_reward_zero_std: zeroStd / micro.reduce((a, b) => a + b.length, 0),
        ...lossMetrics,
        "completions/mean_length": lenStats.mean,
        "completions/min_length": lenStats.min,
        "completions/max_length": lenStats.max,
        "completions/clipped_ratio": truncated / lengths.length,
        "completions/mean_terminated_length": terminatedLengths.length ? termStats.mean : 0,
        ...(isStats.n
          ? {
              "sampling/importance_sampling_ratio/min": isStats.min,
              "sampling/importance_sampling_ratio/mean": isStats.sum / isStats.n,
              "sampling/importance_sampling_ratio/max": isStats.max,
            }
          : {}),
        lr,
        gradNorm,
        timing: Object.fromEntries(Object.entries(timing).map(([k, v]) => [k, v / 1000])),
      };
      return { loss: lastLoss, tokens: lengths.reduce((a, b) => a + b, 0), metrics, samples, completions: c.logCompletions ? table : undefined };
    } finally {
      for (const r of rollouts) {
        tf.dispose([r.mask, r.advantages, ...[r.oldLogp, r.refLogp, r.isRatio].filter((x): x is tf.Tensor2D => x !== null)]);
        for (const h of r.prepared) this.policy.release(h);
      }
    }
  }
}

/** Bessel-corrected std ignoring NaNs (TRL's nanstd, used for reward_std and rewards/<name>/std). */
function unbiased(xs: readonly number[]): number {
  const v = xs.filter((x) => !Number.isNaN(x));
  if (v.length < 2) return 0;
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
}
