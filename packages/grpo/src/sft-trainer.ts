import * as tf from "@tensorflow/tfjs-core";
import type { SFTConfig } from "./config";
import { TrainConfigError } from "./errors";
import { completionMask } from "./math/loss";
import { GradAccumulator } from "./optim/adamw";
import { type HasId, type StepReport, TrainLoop } from "./loop";
import type { Policy, PreparedPrompt } from "./policy";

/** An SFT target in the paper's format: `<think>reasoning</think><answer>short</answer>`. */
export function sftTarget(answer: string, reasoning?: string): string {
  return `<think>${(reasoning ?? "").trim()}</think><answer>${answer.trim()}</answer>`;
}

export interface SFTTrainerOptions<E extends HasId, P, H extends PreparedPrompt> {
  config: SFTConfig;
  /** LoRA policy (finetune "lora") or one whose trainableVariables() are all LM weights (finetune "full"). */
  policy: Policy<P, H>;
  examples: readonly E[];
  buildPrompt: (example: E, epoch: number) => P;
  /** The target completion text of an example. Default: sftTarget(answer, reasoning) for {answer, reasoning} examples. */
  target?: (example: E) => string;
  /** Tokenises a target completion (include the end-of-turn token the model should learn to emit). Default: policy.encode. */
  encodeTarget?: (text: string) => number[] | Promise<number[]>;
  runDir: string;
}

/**
 * Supervised fine-tuning, the paper's baseline: cross-entropy on the completion tokens only (the prompt and the
 * image tokens carry no loss), mean over the micro-batch's completion tokens, averaged over accumulation steps.
 */
export class SFTTrainer<E extends HasId, P, H extends PreparedPrompt> extends TrainLoop<E, P, H> {
  private readonly encodeTarget: (text: string) => number[] | Promise<number[]>;
  private readonly target: (example: E) => string;

  constructor(private readonly o: SFTTrainerOptions<E, P, H>) {
    super(o.config, o.policy, o.examples, o.runDir);
    const enc = o.encodeTarget ?? o.policy.encode?.bind(o.policy);
    if (!enc) throw new TrainConfigError("SFT needs encodeTarget or a policy with encode()", { code: "CONFIG_INVALID", details: { field: "encodeTarget" } });
    this.encodeTarget = enc;
    this.target =
      o.target ??
      ((e: E) => {
        const x = e as unknown as { answer?: string; reasoning?: string };
        if (typeof x.answer !== "string") throw new TrainConfigError(`example ${e.id} has no "answer" for the SFT target`, { code: "CONFIG_INVALID", details: { example: e.id } });
        return sftTarget(x.answer, x.reasoning);
      });
  }

  protected examplesPerStep(): number {
    return this.o.config.batchSize * this.o.config.gradientAccumulationSteps;
  }

  protected updatesPerStep(): number {
    return 1;
  }

  protected async runStep(micro: Array<Array<{ example: E; epoch: number }>>): Promise<StepReport> {
    const acc = new GradAccumulator();
    let lossSum = 0;
    let tokens = 0;
    let maxLen = 0;
    const t0 = performance.now();
    for (const mb of micro) {
      const prepared: H[] = [];
      try {
        const items: Array<{ prepared: H; completionIds: number[] }> = [];
        for (const { example, epoch } of mb) {
          const h = await this.policy.prepare(this.o.buildPrompt(example, epoch));
          prepared.push(h);
          items.push({ prepared: h, completionIds: (await this.encodeTarget(this.target(example))).slice(0, this.o.config.maxCompletionLength) });
        }
        const lens = items.map((it) => it.completionIds.length);
        const T = Math.max(1, ...lens);
        tokens += lens.reduce((a, b) => a + b, 0);
        maxLen = Math.max(maxLen, T);
        const mask = tf.tensor2d(completionMask(lens, T), [items.length, T]);
        const { value, grads } = tf.variableGrads(
          () =>
            tf.tidy(() => {
              const logp = this.policy.completionLogprobs(items, T);
              return tf.div(tf.neg(tf.sum(tf.mul(logp, mask))), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
            }),
          this.variables,
        );
        mask.dispose();
        lossSum += (await value.data())[0];
        value.dispose();
        acc.add(this.variables.map((v) => grads[v.name]));
      } finally {
        for (const h of prepared) this.policy.release(h);
      }
    }
    const backward = (performance.now() - t0) / 1000;
    const loss = lossSum / micro.length;
    const { gradNorm, lr } = await this.applyUpdate(acc.mean(), loss);
    return { loss, tokens, metrics: { lr, gradNorm, completionLengthMax: maxLen, timing: { backward } } };
  }
}
