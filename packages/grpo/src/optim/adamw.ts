import * as tf from "@tensorflow/tfjs-core";
import { CheckpointError, TrainConfigError } from "../errors";

/** AdamW hyper-parameters (torch.optim.AdamW semantics: decoupled weight decay). */
export interface AdamWOptions {
  /** β1, default 0.9 (TRL/transformers default; the paper does not state it). */
  beta1?: number;
  /** β2, default 0.999. */
  beta2?: number;
  /** ε added to the denominator, default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ: p ← p·(1 − lr·λ) before the Adam update. Default 0 (TRL default). */
  weightDecay?: number;
}

/** Exact, serialisable optimiser state: moments keyed by variable name, as raw float32. */
export interface AdamWState {
  step: number;
  m: Record<string, Float32Array>;
  v: Record<string, Float32Array>;
}

/**
 * AdamW written as small tfjs ops so that its state can be saved and restored bit for bit:
 *   p ← p·(1 − lr·λ);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
 * (the same operation order as torch.optim.AdamW's single-tensor path).
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private t = 0;
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];

  /** State keys, parallel to `variables` (default: the variables' names). */
  readonly names: string[];

  constructor(
    readonly variables: tf.Variable[],
    opts: AdamWOptions = {},
    names?: string[],
  ) {
    this.names = names ?? variables.map((v) => v.name);
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
    for (const [k, val, lo, hi] of [
      ["beta1", this.beta1, 0, 1],
      ["beta2", this.beta2, 0, 1],
    ] as const) {
      if (!(val >= lo && val < hi)) throw new TrainConfigError(`AdamW ${k} must be in [${lo}, ${hi}), got ${val}`, { code: "CONFIG_RANGE", details: { field: k } });
    }
    if (!(this.eps > 0)) throw new TrainConfigError(`AdamW eps must be > 0, got ${this.eps}`, { code: "CONFIG_RANGE", details: { field: "eps" } });
    if (!(this.weightDecay >= 0)) throw new TrainConfigError(`AdamW weightDecay must be >= 0, got ${this.weightDecay}`, { code: "CONFIG_RANGE", details: { field: "weightDecay" } });
    const seen = new Set<string>();
    for (const n of this.names) {
      if (seen.has(n)) throw new TrainConfigError(`two trainable variables share the name "${n}"`, { code: "CONFIG_DUPLICATE_VARIABLE", details: { variable: n } });
      seen.add(n);
    }
    this.m = variables.map((v) => tf.variable(tf.zerosLike(v), false));
    this.v = variables.map((v) => tf.variable(tf.zerosLike(v), false));
  }

  /** Number of updates applied so far. */
  get stepCount(): number {
    return this.t;
  }

  /** Applies one update with learning rate `lr`; `grads[i]` belongs to `variables[i]`. Does not dispose the grads. */
  step(grads: tf.Tensor[], lr: number): void {
    if (grads.length !== this.variables.length) {
      throw new TrainConfigError(`AdamW.step got ${grads.length} gradients for ${this.variables.length} variables`, { code: "OPTIM_GRAD_COUNT" });
    }
    this.t += 1;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2Sqrt = Math.sqrt(1 - this.beta2 ** this.t);
    const stepSize = lr / bc1;
    tf.tidy(() => {
      for (let i = 0; i < grads.length; i++) {
        const p = this.variables[i];
        const g = grads[i];
        let pNew: tf.Tensor = p;
        if (this.weightDecay !== 0) pNew = tf.mul(p, 1 - lr * this.weightDecay);
        const m = tf.add(tf.mul(this.m[i], this.beta1), tf.mul(g, 1 - this.beta1));
        const v = tf.add(tf.mul(this.v[i], this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        const denom = tf.add(tf.div(tf.sqrt(v), bc2Sqrt), this.eps);
        pNew = tf.sub(pNew, tf.mul(tf.div(m, denom), stepSize));
        this.m[i].assign(m);
        this.v[i].assign(v);
        p.assign(pNew);
      }
    });
  }

  /** The m and v tensors (for {@link readToHost} before getState on a GPU backend). */
  stateTensors(): tf.Tensor[] {
    return [...this.m, ...this.v];
  }

  getState(): AdamWState {
    const m: Record<string, Float32Array> = {};
    const v: Record<string, Float32Array> = {};
    this.names.forEach((name, i) => {
      m[name] = this.m[i].dataSync() as Float32Array;
      v[name] = this.v[i].dataSync() as Float32Array;
    });
    return { step: this.t, m, v };
  }

  setState(state: AdamWState): void {
    this.variables.forEach((p, i) => {
      const name = this.names[i];
      for (const [kind, src, dst] of [
        ["m", state.m, this.m],
        ["v", state.v, this.v],
      ] as const) {
        const data = src[name];
        if (!data) throw new CheckpointError(`optimizer state has no ${kind} for variable "${name}"`, { code: "CKPT_OPTIM_MISSING", details: { variable: name } });
        if (data.length !== p.size) {
          throw new CheckpointError(`optimizer ${kind} for "${name}" has ${data.length} values, expected ${p.size}`, { code: "CKPT_OPTIM_SHAPE", details: { variable: name } });
        }
        tf.tidy(() => dst[i].assign(tf.tensor(data, p.shape, "float32")));
      }
    });
    this.t = state.step;
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/**
 * torch.nn.utils.clip_grad_norm_: total = √Σ‖g‖²; if total > maxNorm, every gradient is scaled by
 * maxNorm / (total + 1e-6). Returns the new gradients (the inputs are disposed when replaced) and the
 * norm before clipping. maxNorm ≤ 0 or Infinity disables clipping (the norm is still returned).
 */
export function clipByGlobalNorm(grads: tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: number } {
  const normT = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))));
  const norm = normT.dataSync()[0];
  normT.dispose();
  return clipToNorm(grads, maxNorm, norm);
}

/** {@link clipByGlobalNorm} with an asynchronous read of the norm (works on webgpu, which cannot read synchronously). */
export async function clipByGlobalNormAsync(grads: tf.Tensor[], maxNorm: number): Promise<{ grads: tf.Tensor[]; norm: number }> {
  const normT = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))));
  let norm: number;
  try {
    norm = (await normT.data())[0];
  } finally {
    normT.dispose();
  }
  return clipToNorm(grads, maxNorm, norm);
}

function clipToNorm(grads: tf.Tensor[], maxNorm: number, norm: number): { grads: tf.Tensor[]; norm: number } {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm) || !Number.isFinite(norm)) return { grads, norm };
  const coef = Math.min(1, maxNorm / (norm + 1e-6));
  if (coef >= 1) return { grads, norm };
  const out = grads.map((g) => tf.mul(g, coef));
  tf.dispose(grads);
  return { grads: out, norm };
}

/** Sums gradients over micro-batches; `mean()` returns their average (= the loss divided by the number of micro-batches). */
export class GradAccumulator {
  private sums: tf.Tensor[] | null = null;
  private n = 0;

  /** Adds one micro-batch's gradients; disposes them. */
  add(grads: tf.Tensor[]): void {
    if (!this.sums) {
      this.sums = grads.map((g) => tf.clone(g));
    } else {
      const prev = this.sums;
      this.sums = prev.map((s, i) => tf.add(s, grads[i]));
      tf.dispose(prev);
    }
    tf.dispose(grads);
    this.n += 1;
  }

  get count(): number {
    return this.n;
  }

  /** The averaged gradients (caller disposes them); resets the accumulator. */
  mean(): tf.Tensor[] {
    if (!this.sums) throw new TrainConfigError("GradAccumulator.mean() called before any add()", { code: "OPTIM_EMPTY" });
    const sums = this.sums;
    const out = this.n === 1 ? sums : sums.map((s) => tf.div(s, this.n));
    if (this.n !== 1) tf.dispose(sums);
    this.sums = null;
    this.n = 0;
    return out;
  }

  /** The summed gradients (caller disposes them); resets the accumulator. For losses normalised over all micro-batches (dapo, cispo). */
  sum(): tf.Tensor[] {
    if (!this.sums) throw new TrainConfigError("GradAccumulator.sum() called before any add()", { code: "OPTIM_EMPTY" });
    const sums = this.sums;
    this.sums = null;
    this.n = 0;
    return sums;
  }

  dispose(): void {
    if (this.sums) tf.dispose(this.sums);
    this.sums = null;
    this.n = 0;
  }
}
