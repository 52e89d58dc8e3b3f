import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "tokenizers";
import { EncoderError } from "../errors";
import type { TextSimilarity } from "../types";
import { BertEncoder } from "./encoder";

/** BERTScore precision, recall and F1 of one pair. */
export interface PRF {
  P: number;
  R: number;
  F: number;
}

/** Options of BertScorer. */
export interface BertScoreOptions {
  /** Hidden layer to use (0 = embeddings, numLayers = last). Default: the last layer (bert_score's per-model defaults differ). */
  layer?: number;
  /**
   * Reference corpus for idf weighting (bert_score `idf=True`): weight(token) = log((M + 1) / (df + 1)), df = number of
   * corpus sentences containing the token, M = corpus size; [CLS]/[SEP] (<s>/</s>) weigh 0. Default: no idf
   * (every token weight 1, [CLS]/[SEP] 0), as in the paper's use of BERTScore F1.
   */
  idfCorpus?: string[];
  /** Baseline values for rescaling: s' = (s - b) / (1 - b), per P, R and F (bert_score `rescale_with_baseline`). Default: none. */
  baseline?: PRF;
  /** Sequences per encoder call (padded to the longest). Default 64. */
  batchSize?: number;
}

/** Greedy cosine matching of two embedding matrices (rows L2-normalised here), weighted as bert_score does. */
export function greedyMatch(cand: Float32Array, ref: Float32Array, hidden: number, wc: Float64Array, wr: Float64Array): PRF {
  const tc = cand.length / hidden;
  const tr = ref.length / hidden;
  const norm = (m: Float32Array, n: number) => {
    const out = new Float64Array(m.length);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < hidden; k++) s += m[i * hidden + k] * m[i * hidden + k];
      const inv = 1 / Math.sqrt(s || 1);
      for (let k = 0; k < hidden; k++) out[i * hidden + k] = m[i * hidden + k] * inv;
    }
    return out;
  };
  const c = norm(cand, tc);
  const r = norm(ref, tr);
  const rowMax = new Float64Array(tc).fill(Number.NEGATIVE_INFINITY);
  const colMax = new Float64Array(tr).fill(Number.NEGATIVE_INFINITY);
  for (let i = 0; i < tc; i++) {
    for (let j = 0; j < tr; j++) {
      let s = 0;
      for (let k = 0; k < hidden; k++) s += c[i * hidden + k] * r[j * hidden + k];
      if (s > rowMax[i]) rowMax[i] = s;
      if (s > colMax[j]) colMax[j] = s;
    }
  }
  const wmean = (vals: Float64Array, w: Float64Array) => {
    let num = 0;
    let den = 0;
    for (let i = 0; i < vals.length; i++) {
      num += w[i] * vals[i];
      den += w[i];
    }
    return den > 0 ? num / den : Number.NaN;
  };
  const P = wmean(rowMax, wc);
  const R = wmean(colMax, wr);
  let F = (2 * P * R) / (P + R);
  // bert_score fills NaN F (empty candidate/reference) with 0; do the same for P and R.
  if (!Number.isFinite(F)) F = 0;
  return { P: Number.isFinite(P) ? P : 0, R: Number.isFinite(R) ? R : 0, F };
}

interface Pending {
  cand: string;
  ref: string;
  resolve: (v: PRF) => void;
  reject: (e: unknown) => void;
}

/**
 * BERTScore (Zhang et al., 2020) in tfjs: BERT/RoBERTa token embeddings of a chosen layer, greedy cosine matching,
 * P/R/F1, optional idf and baseline rescaling. Matches bert_score 0.3.x (see the bertscore-tiny fixture README).
 * Concurrent `score` calls made in the same tick are encoded together (deduplicated texts, padded batches).
 */
export class BertScorer implements TextSimilarity {
  readonly name = "bertscore";
  readonly layer: number;
  private readonly batchSize: number;
  private readonly baseline?: PRF;
  private idf: Map<number, number> | null = null;
  private idfDefault = 1;
  private readonly special: Set<number>;
  private readonly maxTokens: number;
  private queue: Pending[] = [];
  private scheduled = false;

  /** Use `BertScorer.fromFolder` or `BertScorer.create` (they find the special tokens and build the idf table). */
  private constructor(
    readonly encoder: BertEncoder,
    readonly tokenizer: Tokenizer,
    opts: BertScoreOptions,
    special: number[],
  ) {
    this.layer = opts.layer ?? encoder.config.numLayers;
    if (!Number.isInteger(this.layer) || this.layer < 0 || this.layer > encoder.config.numLayers)
      throw new EncoderError(`BERTScore layer ${this.layer} is out of range 0..${encoder.config.numLayers}`, { code: "ENCODER_LAYER", details: { field: "layer" } });
    this.batchSize = opts.batchSize ?? 64;
    this.baseline = opts.baseline;
    const offset = encoder.config.family === "roberta" ? encoder.config.padTokenId + 1 : 0;
    this.maxTokens = Math.min(512, encoder.config.maxPositions - offset);
    tokenizer.setTruncation(this.maxTokens);
    this.special = new Set(special);
  }

  /**
   * Loads encoder + tokenizer from a Hugging Face folder (config.json, model.safetensors, tokenizer.json).
   * Call `await initBackend()` from @rarl/core first.
   */
  static async fromFolder(dir: string, opts: BertScoreOptions = {}): Promise<BertScorer> {
    const tokPath = path.join(dir, "tokenizer.json");
    if (!fs.existsSync(tokPath))
      throw new EncoderError(`encoder folder ${dir}: missing tokenizer.json (expected config.json + model.safetensors + tokenizer.json)`, {
        code: "ENCODER_MISSING_FILE",
        details: { file: tokPath },
      });
    const tokenizer = Tokenizer.fromFile(tokPath);
    const encoder = BertEncoder.fromFolder(dir);
    return BertScorer.create(encoder, tokenizer, opts);
  }

  /** Builds a scorer over an existing encoder and tokenizer ([CLS]/[SEP] found by encoding the empty string). */
  static async create(encoder: BertEncoder, tokenizer: Tokenizer, opts: BertScoreOptions = {}): Promise<BertScorer> {
    const empty = await tokenizer.encode("", null, { addSpecialTokens: true });
    const s = new BertScorer(encoder, tokenizer, opts, empty.getIds());
    if (opts.idfCorpus) await s.setIdfCorpus(opts.idfCorpus);
    return s;
  }

  /** Token ids with special tokens, as bert_score's sent_encode: text stripped, truncated to the model's maximum. */
  async tokenize(texts: string[]): Promise<number[][]> {
    if (texts.length === 0) return [];
    const encs = await this.tokenizer.encodeBatch(
      texts.map((t) => t.trim()),
      { addSpecialTokens: true },
    );
    return encs.map((e) => e.getIds());
  }

  /** Sets (or, with null, removes) the idf corpus. */
  async setIdfCorpus(corpus: string[] | null): Promise<void> {
    if (!corpus) {
      this.idf = null;
      return;
    }
    const df = new Map<number, number>();
    for (const ids of await this.tokenize(corpus)) for (const id of new Set(ids)) df.set(id, (df.get(id) ?? 0) + 1);
    const M = corpus.length;
    const idf = new Map<number, number>();
    for (const [id, c] of df) idf.set(id, Math.log((M + 1) / (c + 1)));
    this.idf = idf;
    this.idfDefault = Math.log(M + 1);
  }

  private weights(ids: number[]): Float64Array {
    return Float64Array.from(ids, (id) => (this.special.has(id) ? 0 : this.idf ? (this.idf.get(id) ?? this.idfDefault) : 1));
  }

  /** Embeddings (chosen layer, not normalised) of texts, encoded in length-sorted padded batches. */
  async embed(texts: string[]): Promise<{ ids: number[][]; embeddings: Float32Array[] }> {
    const ids = await this.tokenize(texts);
    const order = ids.map((_, i) => i).sort((a, b) => ids[a].length - ids[b].length);
    const embeddings: Float32Array[] = new Array(texts.length);
    for (let s = 0; s < order.length; s += this.batchSize) {
      const chunk = order.slice(s, s + this.batchSize);
      const out = await this.encoder.embed(
        chunk.map((i) => ids[i]),
        this.layer,
      );
      chunk.forEach((i, k) => {
        embeddings[i] = out[k];
      });
    }
    return { ids, embeddings };
  }

  /** P/R/F1 of each (candidate, reference) pair, rescaled with the baseline when one is set. */
  async scorePRF(candidates: string[], references: string[]): Promise<PRF[]> {
    if (candidates.length !== references.length)
      throw new EncoderError(`BERTScore: ${candidates.length} candidates but ${references.length} references`, { code: "BERTSCORE_LENGTHS" });
    const uniq = [...new Set([...candidates, ...references].map((t) => t.trim()))];
    const index = new Map(uniq.map((t, i) => [t, i]));
    const { ids, embeddings } = await this.embed(uniq);
    const H = this.encoder.config.hiddenSize;
    return candidates.map((c, i) => {
      const a = index.get(c.trim()) as number;
      const b = index.get(references[i].trim()) as number;
      const prf = greedyMatch(embeddings[a], embeddings[b], H, this.weights(ids[a]), this.weights(ids[b]));
      if (!this.baseline) return prf;
      const bl = this.baseline;
      return { P: (prf.P - bl.P) / (1 - bl.P), R: (prf.R - bl.R) / (1 - bl.R), F: (prf.F - bl.F) / (1 - bl.F) };
    });
  }

  /**
   * F1 per pair (TextSimilarity). Calls made in the same tick are queued and encoded together, so a batch of rewards
   * evaluated with Promise.all shares padded encoder batches.
   */
  score(candidates: string[], references: string[]): Promise<number[]> {
    if (candidates.length !== references.length)
      return Promise.reject(new EncoderError(`BERTScore: ${candidates.length} candidates but ${references.length} references`, { code: "BERTSCORE_LENGTHS" }));
    return Promise.all(
      candidates.map(
        (cand, i) =>
          new Promise<PRF>((resolve, reject) => {
            this.queue.push({ cand, ref: references[i], resolve, reject });
            if (!this.scheduled) {
              this.scheduled = true;
              setImmediate(() => void this.flush());
            }
          }),
      ),
    ).then((prfs) => prfs.map((p) => p.F));
  }

  private async flush(): Promise<void> {
    const items = this.queue;
    this.queue = [];
    this.scheduled = false;
    try {
      const prfs = await this.scorePRF(
        items.map((p) => p.cand),
        items.map((p) => p.ref),
      );
      items.forEach((p, i) => {
        p.resolve(prfs[i]);
      });
    } catch (e) {
      for (const p of items) p.reject(e);
    }
  }

  /** Frees the encoder weights. */
  dispose(): void {
    this.encoder.dispose();
  }
}
