import { RewardConfigError } from "./errors";
import { runReward } from "./registry";
import type { RewardContext, RewardDefinition, RewardSample } from "./types";

/** One weighted component of a composite reward. */
export interface RewardComponent {
  /** Name used in reports (default: the reward's name). Must be unique within the composite. */
  name?: string;
  reward: RewardDefinition;
  /** Weight of the component in the sum. The paper sums its components with weight 1 each. */
  weight: number;
}

/** Options of CompositeReward. */
export interface CompositeOptions {
  /** Most calls of `async: true` rewards (e.g. an LLM judge) in flight at once, across a batch. Default 4. */
  concurrency?: number;
}

/** A composite score: every component's value (for logging) and the weighted sum. */
export interface CompositeScore {
  components: Record<string, number>;
  /** Σ weight × value (not normalised by the weights). */
  total: number;
}

/** Limits how many async tasks run at once. */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(readonly limit: number) {
    if (!(Number.isInteger(limit) && limit >= 1)) throw new RewardConfigError(`concurrency must be an integer >= 1, got ${limit}`, { code: "REWARD_CONFIG" });
  }
  /** Peak number of tasks seen running at once (for tests and logs). */
  peak = 0;
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    this.peak = Math.max(this.peak, this.active);
    try {
      return await task();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * The weighted sum of several rewards (RARL §2.2.2: format + length + accuracy + reasoning). Each component's value
 * is reported. Components run concurrently per completion and across a batch (so BERTScore requests of a batch are
 * encoded together); `async: true` rewards are limited to `concurrency` calls in flight.
 */
export class CompositeReward {
  readonly components: ReadonlyArray<Required<Pick<RewardComponent, "name">> & RewardComponent>;
  readonly semaphore: Semaphore;

  constructor(components: RewardComponent[], opts: CompositeOptions = {}) {
    const seen = new Set<string>();
    this.components = components.map((c) => {
      const name = c.name ?? c.reward.name;
      if (seen.has(name))
        throw new RewardConfigError(`composite reward: component name "${name}" used twice (give one a \`name\`)`, { code: "REWARD_CONFIG", details: { plugin: name } });
      if (!Number.isFinite(c.weight))
        throw new RewardConfigError(`composite reward: weight of "${name}" must be a finite number`, { code: "REWARD_CONFIG", details: { plugin: name } });
      seen.add(name);
      return { ...c, name };
    });
    this.semaphore = new Semaphore(opts.concurrency ?? 4);
  }

  /** Scores one completion. Errors of a component reject (a RewardPluginError names the reward and the sample). */
  async score(completion: string, sample: RewardSample, ctx: RewardContext): Promise<CompositeScore> {
    const values = await Promise.all(
      this.components.map((c) =>
        c.reward.async ? this.semaphore.run(() => runReward(c.reward, completion, sample, ctx)) : runReward(c.reward, completion, sample, ctx),
      ),
    );
    const components: Record<string, number> = {};
    let total = 0;
    this.components.forEach((c, i) => {
      components[c.name] = values[i];
      total += c.weight * values[i];
    });
    return { components, total };
  }

  /** Scores a batch (e.g. a GRPO group), all completions concurrently. */
  scoreBatch(items: ReadonlyArray<{ completion: string; sample: RewardSample }>, ctx: RewardContext): Promise<CompositeScore[]> {
    return Promise.all(items.map((it) => this.score(it.completion, it.sample, ctx)));
  }
}
