import fs from "node:fs";
import path from "node:path";
import { openSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { EncoderError } from "../errors";

/** The encoder hyper-parameters BERTScore needs (read from a Hugging Face config.json). */
export interface EncoderConfig {
  /** "bert" (absolute positions from 0) or "roberta" (positions from padding_idx + 1, pads at padding_idx). */
  family: "bert" | "roberta";
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  /** LayerNorm epsilon. HF default 1e-12 (BERT) / 1e-5 (RoBERTa). */
  layerNormEps: number;
  maxPositions: number;
  /** pad_token_id (BERT 0, RoBERTa 1). For RoBERTa also the position padding_idx. */
  padTokenId: number;
  /** "gelu" (exact erf), "gelu_new" / "gelu_pytorch_tanh" (tanh approximation) or "relu". */
  hiddenAct: string;
  vocabSize: number;
}

const ROBERTA_LIKE = new Set(["roberta", "xlm-roberta", "camembert"]);

/** Parses an HF BERT/RoBERTa config.json object. */
export function parseEncoderConfig(json: any, source = "config.json"): EncoderConfig {
  const type = String(json?.model_type ?? "");
  if (type !== "bert" && !ROBERTA_LIKE.has(type))
    throw new EncoderError(`${source}: model_type "${type}" is not supported (expected bert, roberta, xlm-roberta or camembert)`, {
      code: "ENCODER_UNSUPPORTED",
      details: { file: source, field: "model_type" },
    });
  const num = (k: string, dflt?: number): number => {
    const v = json[k] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v))
      throw new EncoderError(`${source}: \`${k}\` must be a number`, { code: "ENCODER_CONFIG", details: { file: source, field: k } });
    return v;
  };
  if (json.position_embedding_type !== undefined && json.position_embedding_type !== "absolute")
    throw new EncoderError(`${source}: position_embedding_type "${json.position_embedding_type}" is not supported (only "absolute")`, {
      code: "ENCODER_UNSUPPORTED",
      details: { file: source, field: "position_embedding_type" },
    });
  const family = type === "bert" ? "bert" : "roberta";
  const cfg: EncoderConfig = {
    family,
    hiddenSize: num("hidden_size"),
    numLayers: num("num_hidden_layers"),
    numHeads: num("num_attention_heads"),
    intermediateSize: num("intermediate_size"),
    layerNormEps: num("layer_norm_eps", 1e-12),
    maxPositions: num("max_position_embeddings"),
    padTokenId: num("pad_token_id", family === "bert" ? 0 : 1),
    hiddenAct: String(json.hidden_act ?? "gelu"),
    vocabSize: num("vocab_size"),
  };
  if (!["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"].includes(cfg.hiddenAct))
    throw new EncoderError(`${source}: hidden_act "${cfg.hiddenAct}" is not supported`, { code: "ENCODER_UNSUPPORTED", details: { file: source, field: "hidden_act" } });
  if (cfg.hiddenSize % cfg.numHeads !== 0)
    throw new EncoderError(`${source}: hidden_size ${cfg.hiddenSize} is not divisible by num_attention_heads ${cfg.numHeads}`, {
      code: "ENCODER_CONFIG",
      details: { file: source },
    });
  return cfg;
}

/** A weight lookup: HF key (without the "bert."/"roberta." prefix) -> shape and float data, or undefined. */
export type WeightSource = (name: string) => { shape: number[]; data: Float32Array } | undefined;

interface LayerWeights {
  wq: tf.Tensor2D;
  bq: tf.Tensor1D;
  wk: tf.Tensor2D;
  bk: tf.Tensor1D;
  wv: tf.Tensor2D;
  bv: tf.Tensor1D;
  wo: tf.Tensor2D;
  bo: tf.Tensor1D;
  ln1g: tf.Tensor1D;
  ln1b: tf.Tensor1D;
  wi: tf.Tensor2D;
  bi: tf.Tensor1D;
  wo2: tf.Tensor2D;
  bo2: tf.Tensor1D;
  ln2g: tf.Tensor1D;
  ln2b: tf.Tensor1D;
}

/**
 * A BERT / RoBERTa encoder (post-LayerNorm transformer, absolute positions) in tfjs, for BERTScore embeddings.
 * Call `await initBackend()` (from @rarl/core) first. Weights stay resident until `dispose()`.
 */
export class BertEncoder {
  readonly config: EncoderConfig;
  private readonly wordEmb: tf.Tensor2D;
  private readonly posEmb: tf.Tensor2D;
  private readonly typeRow: tf.Tensor1D | null;
  private readonly embLnG: tf.Tensor1D;
  private readonly embLnB: tf.Tensor1D;
  private readonly layers: LayerWeights[];
  private disposed = false;

  /** Builds an encoder from a weight lookup (keys as in BertModel/RobertaModel.save_pretrained, prefix stripped). */
  constructor(config: EncoderConfig, get: WeightSource, source = "<weights>") {
    this.config = config;
    const created: tf.Tensor[] = [];
    const need = (name: string, shape: number[]) => {
      const w = get(name);
      if (!w)
        throw new EncoderError(`${source}: missing tensor "${name}"`, { code: "ENCODER_MISSING_TENSOR", details: { file: source, tensor: name } });
      if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i]))
        throw new EncoderError(`${source}: tensor "${name}" has shape [${w.shape}], expected [${shape}]`, {
          code: "ENCODER_BAD_SHAPE",
          details: { file: source, tensor: name },
        });
      return w.data;
    };
    const H = config.hiddenSize;
    const I = config.intermediateSize;
    const keep = <T extends tf.Tensor>(t: T): T => {
      created.push(t);
      return t;
    };
    const vec = (name: string, n: number) => keep(tf.tensor1d(need(name, [n])));
    // HF Linear weights are [out, in]; store them transposed ([in, out]) so matMul needs no transpose flag (slow on wasm).
    const lin = (name: string, out: number, inp: number) =>
      keep(tf.tidy(() => tf.transpose(tf.tensor2d(need(name, [out, inp]), [out, inp]))) as tf.Tensor2D);
    const ln = (p: string, n: number): [tf.Tensor1D, tf.Tensor1D] => {
      const g = get(`${p}.weight`) ? `${p}.weight` : `${p}.gamma`;
      const b = get(`${p}.bias`) ? `${p}.bias` : `${p}.beta`;
      return [vec(g, n), vec(b, n)];
    };
    try {
      this.wordEmb = keep(tf.tensor2d(need("embeddings.word_embeddings.weight", [config.vocabSize, H]), [config.vocabSize, H]));
      this.posEmb = keep(tf.tensor2d(need("embeddings.position_embeddings.weight", [config.maxPositions, H]), [config.maxPositions, H]));
      const tt = get("embeddings.token_type_embeddings.weight");
      this.typeRow = tt ? keep(tf.tensor1d(tt.data.subarray(0, H))) : null;
      [this.embLnG, this.embLnB] = ln("embeddings.LayerNorm", H);
      this.layers = [];
      for (let l = 0; l < config.numLayers; l++) {
        const p = `encoder.layer.${l}`;
        const [ln1g, ln1b] = ln(`${p}.attention.output.LayerNorm`, H);
        const [ln2g, ln2b] = ln(`${p}.output.LayerNorm`, H);
        this.layers.push({
          wq: lin(`${p}.attention.self.query.weight`, H, H),
          bq: vec(`${p}.attention.self.query.bias`, H),
          wk: lin(`${p}.attention.self.key.weight`, H, H),
          bk: vec(`${p}.attention.self.key.bias`, H),
          wv: lin(`${p}.attention.self.value.weight`, H, H),
          bv: vec(`${p}.attention.self.value.bias`, H),
          wo: lin(`${p}.attention.output.dense.weight`, H, H),
          bo: vec(`${p}.attention.output.dense.bias`, H),
          ln1g,
          ln1b,
          wi: lin(`${p}.intermediate.dense.weight`, I, H),
          bi: vec(`${p}.intermediate.dense.bias`, I),
          wo2: lin(`${p}.output.dense.weight`, H, I),
          bo2: vec(`${p}.output.dense.bias`, H),
          ln2g,
          ln2b,
        });
      }
    } catch (e) {
      tf.dispose(created);
      throw e;
    }
  }

  /**
   * Loads `config.json` + `model.safetensors` from a Hugging Face folder (BertModel / RobertaModel, or a model with
   * a "bert." / "roberta." prefix such as *ForMaskedLM). F16/BF16 weights are widened to F32.
   */
  static fromFolder(dir: string): BertEncoder {
    const cfgPath = path.join(dir, "config.json");
    const stPath = path.join(dir, "model.safetensors");
    for (const f of [cfgPath, stPath])
      if (!fs.existsSync(f))
        throw new EncoderError(`encoder folder ${dir}: missing ${path.basename(f)} (expected config.json + model.safetensors + tokenizer.json)`, {
          code: "ENCODER_MISSING_FILE",
          details: { file: f },
        });
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(cfgPath, "utf8"));
    } catch (e) {
      throw new EncoderError(`${cfgPath}: invalid JSON: ${(e as Error).message}`, { code: "ENCODER_CONFIG", details: { file: cfgPath }, cause: e });
    }
    const config = parseEncoderConfig(json, cfgPath);
    const st = openSafetensors(stPath);
    const keys = new Set(st.keys());
    const anchor = "embeddings.word_embeddings.weight";
    const prefix = [...keys].find((k) => k.endsWith(anchor))?.slice(0, -anchor.length) ?? "";
    try {
      return new BertEncoder(
        config,
        (name) => {
          const k = prefix + name;
          if (!keys.has(k)) return undefined;
          const t = st.read(k);
          if (!(t.data instanceof Float32Array))
            throw new EncoderError(`${stPath}: tensor "${k}" has dtype ${t.dtype}, expected a float type`, {
              code: "ENCODER_BAD_DTYPE",
              details: { file: stPath, tensor: k },
            });
          return { shape: t.shape, data: t.data };
        },
        stPath,
      );
    } finally {
      st.close();
    }
  }

  private layerNorm(x: tf.Tensor, g: tf.Tensor1D, b: tf.Tensor1D): tf.Tensor {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, this.config.layerNormEps))), g), b);
  }

  private act(x: tf.Tensor): tf.Tensor {
    switch (this.config.hiddenAct) {
      case "relu":
        return tf.relu(x);
      case "gelu_new":
      case "gelu_pytorch_tanh": {
        const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
        return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
      }
      default:
        return tf.mul(tf.mul(0.5, x), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
    }
  }

  /**
   * Hidden states of `layer` (0 = embedding output, numLayers = last; default last) for a batch of id sequences
   * (with their special tokens). Sequences are right-padded with an attention mask; returns one Float32Array
   * [len × hidden] per sequence. Only the layers up to `layer` are computed.
   */
  async embed(batch: number[][], layer = this.config.numLayers): Promise<Float32Array[]> {
    if (this.disposed) throw new EncoderError("encoder is disposed", { code: "ENCODER_DISPOSED" });
    if (!Number.isInteger(layer) || layer < 0 || layer > this.config.numLayers)
      throw new EncoderError(`layer ${layer} is out of range 0..${this.config.numLayers}`, { code: "ENCODER_LAYER", details: { field: "layer" } });
    if (batch.length === 0) return [];
    const { hiddenSize: H, numHeads: nh, padTokenId, family, maxPositions } = this.config;
    const B = batch.length;
    const T = Math.max(...batch.map((s) => s.length));
    const offset = family === "roberta" ? padTokenId + 1 : 0;
    if (T + offset > maxPositions)
      throw new EncoderError(`sequence of ${T} tokens exceeds max_position_embeddings ${maxPositions}`, { code: "ENCODER_TOO_LONG" });
    const ids = new Int32Array(B * T).fill(padTokenId);
    const pos = new Int32Array(B * T).fill(family === "roberta" ? padTokenId : 0);
    const bias = new Float32Array(B * T);
    batch.forEach((seq, b) => {
      for (let t = 0; t < T; t++) {
        if (t < seq.length) {
          ids[b * T + t] = seq[t];
          pos[b * T + t] = t + offset;
        } else bias[b * T + t] = -1e9;
      }
    });
    const dh = H / nh;
    // One tidy per layer: intermediates (and the XNNPACK operators tfjs-wasm caches per matmul operand) are freed
    // layer by layer instead of accumulating over the whole forward (bert-base at batch 32 ran out of wasm memory).
    const maskBias = tf.tensor4d(bias, [B, 1, 1, T]);
    let x: tf.Tensor = tf.tidy(() => {
      let e: tf.Tensor = tf.add(tf.gather(this.wordEmb, tf.tensor1d(ids, "int32")), tf.gather(this.posEmb, tf.tensor1d(pos, "int32")));
      if (this.typeRow) e = tf.add(e, this.typeRow);
      return this.layerNorm(e, this.embLnG, this.embLnB);
    });
    try {
      for (let l = 0; l < layer; l++) {
        const w = this.layers[l];
        const prev = x;
        x = tf.tidy(() => {
          const heads = (t: tf.Tensor, perm: number[]) => tf.transpose(tf.reshape(t, [B, T, nh, dh]), perm);
          const q = heads(tf.add(tf.matMul(prev as tf.Tensor2D, w.wq), w.bq), [0, 2, 1, 3]);
          const kT = heads(tf.add(tf.matMul(prev as tf.Tensor2D, w.wk), w.bk), [0, 2, 3, 1]);
          const v = heads(tf.add(tf.matMul(prev as tf.Tensor2D, w.wv), w.bv), [0, 2, 1, 3]);
          const scores = tf.add(tf.mul(tf.matMul(q, kT), 1 / Math.sqrt(dh)), maskBias);
          const ctx = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]), [B * T, H]);
          const a = this.layerNorm(tf.add(tf.add(tf.matMul(ctx as tf.Tensor2D, w.wo), w.bo), prev), w.ln1g, w.ln1b);
          const inter = this.act(tf.add(tf.matMul(a as tf.Tensor2D, w.wi), w.bi));
          return this.layerNorm(tf.add(tf.add(tf.matMul(inter as tf.Tensor2D, w.wo2), w.bo2), a), w.ln2g, w.ln2b);
        });
        prev.dispose();
      }
    } catch (e) {
      x.dispose();
      throw e;
    } finally {
      maskBias.dispose();
    }
    const out = x;
    let flat: Float32Array;
    try {
      flat = (await out.data()) as Float32Array;
    } finally {
      out.dispose();
    }
    return batch.map((seq, b) => flat.slice(b * T * H, (b * T + seq.length) * H));
  }

  /** Frees the weights. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose([this.wordEmb, this.posEmb, this.embLnG, this.embLnB, ...(this.typeRow ? [this.typeRow] : [])]);
    for (const l of this.layers) tf.dispose(Object.values(l));
  }
}
