import * as tf from "@tensorflow/tfjs-core";

/**
 * A LoRA adapter attached to one {@link Linear}: `y += scale · dropout(x) Aᵀ Bᵀ`.
 * Written by the LoRA code (src/lora); the Linear only reads it.
 */
export interface LoraSlot {
  /** Down projection, shape [r, in] (PEFT `lora_A.weight`). */
  A: tf.Variable;
  /** Up projection, shape [out, r] (PEFT `lora_B.weight`). */
  B: tf.Variable;
  /** alpha / r (or alpha / sqrt(r) with rsLoRA). */
  scale: number;
  /** Dropout probability on the adapter's input; applied only while {@link setLoraTraining}(true). */
  dropout: number;
}

let adaptersEnabled = true;
let loraTraining = false;

/** Turns every attached LoRA adapter on or off (module-wide). Off = the base model (reference policy). */
export function setAdaptersEnabled(on: boolean): void {
  adaptersEnabled = on;
}
/** Whether attached LoRA adapters are applied. Default true. */
export function areAdaptersEnabled(): boolean {
  return adaptersEnabled;
}
/** Turns LoRA dropout on (training) or off (inference, the default). */
export function setLoraTraining(on: boolean): void {
  loraTraining = on;
}
/** Whether LoRA dropout is active. */
export function isLoraTraining(): boolean {
  return loraTraining;
}

/** Whether gradients may flow into `w`: a trainable tf.Variable (e.g. full fine-tuning sets Linear weights to these). */
export function isTrainableWeight(w: tf.Tensor): boolean {
  return w instanceof tf.Variable && w.trainable;
}

/**
 * Whether a gradient tape is recording (inside tf.grad / tf.variableGrads / a customGrad's caller). Reads the tfjs
 * engine's gradient depth (tfjs-core 4.22, pinned); the frozen-weight ops below are plain ops when nothing records.
 */
function tapeActive(): boolean {
  const state = (tf.engine() as unknown as { state?: { gradientDepth?: number } }).state;
  return state?.gradientDepth === undefined || state.gradientDepth > 0;
}

/**
 * `W · xT` for a frozen weight W [out, in] and an activation xT [in, N], differentiable with respect to xT only.
 *
 * Under a gradient tape, a plain `tf.matMul(W, xT)` saves both inputs for its backward pass, and the engine saves by
 * cloning, which on tfjs-wasm (its Identity kernel copies) duplicates W at every call: one weight-sized copy per
 * projection per forward, alive until the backward pass. Here the tape records one custom op whose only input is
 * xT and which saves nothing: W is read from `getW` again in the backward pass, and dxT = (dyᵀ · W)ᵀ uses only
 * untransposed matmuls (transposed-flag matmuls are slow on wasm) and activation-sized transposes.
 *
 * @param getW returns W; called once in the forward pass and once in the backward pass (a host-resident weight is
 *   uploaded for each; the caller's tidy / this function's tidy frees the upload).
 * @param xT [in, N].
 * @returns [out, N], equal to `tf.matMul(getW(), xT)`.
 */
export function frozenMatMul(getW: () => tf.Tensor2D, xT: tf.Tensor2D): tf.Tensor2D {
  if (!tapeActive()) return tf.matMul(getW(), xT); // inference (generation, log-probs without a tape): no op wrapper
  const f = tf.customGrad(((x: tf.Tensor) => ({
    value: tf.matMul(getW(), x as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor) => tf.tidy(() => tf.transpose(tf.matMul(tf.transpose(dy) as tf.Tensor2D, getW()))),
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(xT) as tf.Tensor2D;
}

/**
 * `tf.gather(W, ids)` (rows of a frozen table, e.g. the token embedding) without saving W for a backward pass: a
 * plain gather under a gradient tape saves (on wasm: copies) the whole table. No gradient flows to W or ids.
 */
export function frozenGather(W: tf.Tensor2D, ids: tf.Tensor1D): tf.Tensor2D {
  if (isTrainableWeight(W) || !tapeActive()) return tf.gather(W, ids);
  const f = tf.customGrad(((i: tf.Tensor) => ({
    value: tf.gather(W, i),
    gradFunc: () => tf.zeros(i.shape), // never needed: ids are integer inputs, not a function of any variable
  })) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(ids) as tf.Tensor2D;
}

/** A weight kept in host memory (JS Float32Array, row-major), uploaded to the backend only while it is used. */
export interface HostWeight {
  data: Float32Array;
  shape: [number, number];
}

/**
 * A dense layer `y = x Wᵀ + b` with weight [out, in] (PyTorch / Hugging Face layout) and optional bias [out],
 * plus an optional LoRA slot. Used by every projection of the model (q/k/v/o, gate/up/down, vision qkv/proj/fc1/fc2,
 * merger MLP), so `model.namedLinears()` reaches them all.
 *
 * Residency: normally the weight is a tfjs tensor on the backend (`residency === "device"`). A layer built with
 * {@link Linear.fromHost} keeps it as a host Float32Array and uploads it for the duration of each `apply` (the
 * `weightResidency: "host"` loading mode for models larger than the wasm heap); its `weight` getter then throws,
 * and {@link setWeight} makes it device-resident.
 *
 * Implementation note: tfjs-wasm runs `matMul(x, W, false, true)` about 10x slower than an untransposed matmul,
 * so `apply` computes `(W · xᵀ)ᵀ` (two cheap activation transposes, no transposed-flag matmul, no second copy of W).
 */
export class Linear {
  private w: tf.Tensor2D | null;
  private host: HostWeight | null = null;
  /** Bias [out] or null (always device-resident). */
  bias: tf.Tensor1D | null;
  /** LoRA adapter, or null. Set by the LoRA code. */
  lora: LoraSlot | null = null;
  /** [out, in]. */
  readonly shape: [number, number];

  constructor(weight: tf.Tensor2D, bias: tf.Tensor1D | null = null) {
    if (weight.rank !== 2) throw new Error(`Linear weight must be rank 2 [out, in], got shape [${weight.shape}]`);
    if (bias && bias.shape[0] !== weight.shape[0]) throw new Error(`Linear bias [${bias.shape}] does not match weight [${weight.shape}]`);
    this.w = weight;
    this.bias = bias;
    this.shape = [weight.shape[0], weight.shape[1]];
  }

  /** A layer whose weight stays in host memory and is uploaded per `apply`. */
  static fromHost(weight: HostWeight, bias: tf.Tensor1D | null = null): Linear {
    const [o, i] = weight.shape;
    if (weight.data.length !== o * i) throw new Error(`Linear.fromHost: ${weight.data.length} values for shape [${o}, ${i}]`);
    const l = Object.create(Linear.prototype) as Linear;
    Object.assign(l, { w: null, host: weight, bias, lora: null, shape: [o, i] });
    if (bias && bias.shape[0] !== o) throw new Error(`Linear bias [${bias.shape}] does not match weight [${o}, ${i}]`);
    return l;
  }

  /** "device": weight is a backend tensor; "host": a Float32Array uploaded per use. */
  get residency(): "device" | "host" {
    return this.w ? "device" : "host";
  }

  /** Weight [out, in] (device-resident layers only). Owned by this layer; replace it with {@link setWeight}. */
  get weight(): tf.Tensor2D {
    if (!this.w) throw new Error(`Linear [${this.shape}]: the weight is host-resident (weightResidency "host"); it has no device tensor`);
    return this.w;
  }

  /** The host copy of a host-resident layer (null when device-resident). */
  get hostWeight(): HostWeight | null {
    return this.host;
  }

  get inFeatures(): number {
    return this.shape[1];
  }
  get outFeatures(): number {
    return this.shape[0];
  }

  /** Replaces the weight (e.g. LoRA merge); disposes the old one unless `disposeOld` is false. A host layer becomes device-resident. */
  setWeight(w: tf.Tensor2D, disposeOld = true): void {
    if (w.shape[0] !== this.outFeatures || w.shape[1] !== this.inFeatures) {
      throw new Error(`Linear.setWeight: shape [${w.shape}] != [${this.shape}]`);
    }
    if (disposeOld) this.w?.dispose();
    this.w = w;
    this.host = null;
  }

  /** x [..., in] -> [..., out]. */
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const inF = this.inFeatures;
      const lead = x.shape.slice(0, -1);
      if (x.shape[x.shape.length - 1] !== inF) throw new Error(`Linear: input last dim ${x.shape[x.shape.length - 1]} != in_features ${inF}`);
      const n = lead.reduce((a, b) => a * b, 1);
      const yT = this.applyT(tf.transpose(tf.reshape(x, [n, inF]))); // [out, N]
      return tf.reshape(tf.transpose(yT), [...lead, this.outFeatures]);
    });
  }

  /**
   * The same layer in transposed layout: xT [in, N] -> yT [out, N] = W·xT + b (+ LoRA). Lets callers share one
   * transposed activation between several projections (q/k/v, gate/up) and chain layers without transposes.
   */
  applyT(xT: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      if (xT.shape[0] !== this.inFeatures) throw new Error(`Linear: input dim ${xT.shape[0]} != in_features ${this.inFeatures}`);
      const w = this.w;
      // host: uploaded for this call (and again in the backward pass), freed by the surrounding tidy
      const getW = () => w ?? tf.tensor2d(this.host!.data, this.shape);
      // [out, N]; a trainable weight (full fine-tuning) keeps tfjs's own gradient, a frozen one gets only dx
      let yT = w && isTrainableWeight(w) ? tf.matMul(w, xT) : frozenMatMul(getW, xT);
      const lora = this.lora;
      if (lora && adaptersEnabled) {
        let xin: tf.Tensor2D = xT;
        if (loraTraining && lora.dropout > 0) xin = tf.dropout(xT, lora.dropout) as tf.Tensor2D;
        const ax = tf.matMul(lora.A, xin); // [r, N]
        yT = tf.add(yT, tf.mul(tf.matMul(lora.B, ax), lora.scale));
      }
      if (this.bias) yT = tf.add(yT, tf.reshape(this.bias, [this.outFeatures, 1]));
      return yT as tf.Tensor2D;
    });
  }

  /** Number of weight + bias elements. */
  numParams(): number {
    return this.shape[0] * this.shape[1] + (this.bias?.size ?? 0);
  }

  dispose(): void {
    this.w?.dispose();
    this.w = null;
    this.host = null;
    this.bias?.dispose();
  }
}
