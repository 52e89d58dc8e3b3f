import path from "node:path";
import { Rng, writeFileAtomic, writeSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import type { Completion, Policy, PreparedPrompt, SamplingOptions } from "../policy";

/** A toy prompt: an id and its token ids. */
export interface ToyPrompt {
  id: string;
  ids: number[];
}

export interface ToyPolicyOptions {
  /** Vocabulary size. Default 8. */
  vocab?: number;
  /** LoRA rank. Default 4. */
  rank?: number;
  /** LoRA alpha (scale = alpha / rank). Default 8. */
  alpha?: number;
  /** End-of-sequence id. Default vocab − 1. */
  eosId?: number;
  /** Seed of the frozen base weights W0. Default 0. */
  seed?: number;
  /** Seed of the LoRA init. Default: `seed`. */
  loraSeed?: number;
}

/**
 * A tiny bigram language model with a LoRA adapter, for testing the trainers without the real VLM:
 * logits(next | prev) = W0[prev] + (α/r)·(onehot(prev)·Aᵀ)·Bᵀ, with frozen W0 ~ N(0, 1), PEFT init
 * (A kaiming-uniform-like, B = 0). It implements {@link Policy} exactly as the Qwen2-VL adapter does.
 */
export class ToyPolicy implements Policy<ToyPrompt, PreparedPrompt> {
  readonly vocab: number;
  readonly rank: number;
  readonly scale: number;
  readonly eosId: number;
  readonly w0: tf.Tensor2D;
  readonly loraA: tf.Variable;
  readonly loraB: tf.Variable;
  private enabled = true;
  private static instances = 0;

  constructor(opts: ToyPolicyOptions = {}) {
    this.vocab = opts.vocab ?? 8;
    this.rank = opts.rank ?? 4;
    this.scale = (opts.alpha ?? 8) / this.rank;
    this.eosId = opts.eosId ?? this.vocab - 1;
    const rng = new Rng(opts.seed ?? 0);
    const V = this.vocab;
    const w0 = new Float32Array(V * V).map(() => rng.normal());
    this.w0 = tf.tensor2d(w0, [V, V]);
    const bound = 1 / Math.sqrt(V);
    const lrng = opts.loraSeed !== undefined ? new Rng(opts.loraSeed) : rng;
    const id = ToyPolicy.instances++;
    // PEFT layout: lora_A [r, in], lora_B [out, r].
    this.loraA = tf.variable(tf.tensor2d(new Float32Array(this.rank * V).map(() => lrng.uniform(-bound, bound)), [this.rank, V]), true, `toy${id}.lora_A`);
    this.loraB = tf.variable(tf.zeros([V, this.rank]), true, `toy${id}.lora_B`);
  }

  trainableVariables(): tf.Variable[] {
    return [this.loraA, this.loraB];
  }

  trainableNames(): string[] {
    return ["toy.lora_A", "toy.lora_B"];
  }

  prepare(prompt: ToyPrompt): PreparedPrompt {
    return { promptIds: prompt.ids, promptText: prompt.ids.join(" ") };
  }

  release(): void {}

  /** Full [V, V] next-token logit table (prev → next). */
  private table(): tf.Tensor2D {
    return tf.tidy(() => {
      if (!this.enabled) return tf.clone(this.w0);
      // delta[prev, next] = scale · Σ_r A[r, prev] · B[next, r]
      const delta = tf.matMul(tf.transpose(this.loraA), tf.transpose(this.loraB));
      return tf.add(this.w0, tf.mul(delta, this.scale)) as tf.Tensor2D;
    });
  }

  async generate(prepared: PreparedPrompt, o: SamplingOptions): Promise<Completion[]> {
    const t = this.table();
    const tab = t.dataSync();
    t.dispose();
    const V = this.vocab;
    const out: Completion[] = [];
    for (let s = 0; s < o.numSamples; s++) {
      let prev = prepared.promptIds[prepared.promptIds.length - 1];
      const ids: number[] = [];
      const logprobs: number[] = [];
      let finishReason: Completion["finishReason"] = "length";
      for (let k = 0; k < o.maxNewTokens; k++) {
        const row = Array.from(tab.subarray(prev * V, prev * V + V), (x) => x / o.temperature);
        const mx = Math.max(...row);
        const w = row.map((x) => Math.exp(x - mx));
        const z = w.reduce((a, b) => a + b, 0);
        const tok = o.rng.categorical(w);
        ids.push(tok);
        logprobs.push(Math.log(w[tok] / z));
        prev = tok;
        if (tok === this.eosId) {
          finishReason = "eos";
          break;
        }
      }
      out.push({ ids, text: ids.join(" "), finishReason, logprobs });
    }
    return out;
  }

  completionLogprobs(items: Array<{ prepared: PreparedPrompt; completionIds: number[] }>, T: number, temperature = 1): tf.Tensor2D {
    const { logp, entropy } = this.completionLogprobsWithEntropy(items, T, temperature);
    entropy.dispose();
    return logp;
  }

  /** Log-probs and per-token entropies (no gradient) of the same log-softmax. */
  completionLogprobsWithEntropy(items: Array<{ prepared: PreparedPrompt; completionIds: number[] }>, T: number, temperature = 1): { logp: tf.Tensor2D; entropy: tf.Tensor2D } {
    const V = this.vocab;
    const B = items.length;
    const prevOh = new Float32Array(B * T * V);
    const tgtOh = new Float32Array(B * T * V);
    items.forEach((it, b) => {
      let prev = it.prepared.promptIds[it.prepared.promptIds.length - 1];
      for (let t = 0; t < Math.min(T, it.completionIds.length); t++) {
        const tok = it.completionIds[t];
        prevOh[(b * T + t) * V + prev] = 1;
        tgtOh[(b * T + t) * V + tok] = 1;
        prev = tok;
      }
    });
    let entropy: tf.Tensor2D | null = null;
    const logp = tf.tidy(() => {
      let logits = tf.matMul(tf.tensor2d(prevOh, [B * T, V]), this.table());
      if (temperature !== 1) logits = tf.div(logits, temperature);
      const lsm = tf.logSoftmax(logits);
      const lsmConst = tf.tensor2d(lsm.dataSync() as Float32Array, [B * T, V]);
      entropy = tf.keep(tf.reshape(tf.neg(tf.sum(tf.mul(tf.exp(lsmConst), lsmConst), 1)), [B, T]) as tf.Tensor2D);
      return tf.reshape(tf.sum(tf.mul(lsm, tf.tensor2d(tgtOh, [B * T, V])), 1), [B, T]) as tf.Tensor2D;
    });
    return { logp, entropy: entropy! };
  }

  withAdapterDisabled<T>(fn: () => T): T {
    this.enabled = false;
    try {
      return fn();
    } finally {
      this.enabled = true;
    }
  }

  saveAdapter(dir: string): void {
    writeSafetensors(
      path.join(dir, "adapter_model.safetensors"),
      {
        "base_model.model.toy.lora_A.weight": { dtype: "F32", shape: this.loraA.shape, data: this.loraA.dataSync() as Float32Array },
        "base_model.model.toy.lora_B.weight": { dtype: "F32", shape: this.loraB.shape, data: this.loraB.dataSync() as Float32Array },
      },
      { format: "pt" },
    );
    writeFileAtomic(
      path.join(dir, "adapter_config.json"),
      `${JSON.stringify({ peft_type: "LORA", r: this.rank, lora_alpha: this.scale * this.rank, target_modules: ["toy"], task_type: "CAUSAL_LM" }, null, 2)}\n`,
    );
  }

  dispose(): void {
    tf.dispose([this.w0, this.loraA, this.loraB]);
  }
}
