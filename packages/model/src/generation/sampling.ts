/**
 * Logits processing and sampling for one sequence position, on the host (Float32Array of vocab size).
 *
 * Semantics follow Hugging Face transformers' `generate()` (v4.47): its `LogitsProcessorList` applies the
 * repetition penalty first, then (sampling only) the warpers temperature, top-k, top-p and min-p, in that
 * order, then samples from the softmax of what is left. Greedy decoding applies the repetition penalty and takes
 * the argmax (temperature and the warpers do not change an argmax, so HF skips them).
 *
 * Why on the host: per decode step we need the raw log-sum-exp (for the reported log-probs) and one pass of
 * processing per row. Reading the [B, V] last-position logits once and doing everything in one or two O(V)
 * loops is cheaper than several tfjs kernels (softmax, topk, sort) on 151 936 columns; see
 * bench/RESULTS-generation.md for the measurement.
 */
import type { Rng } from "@rarl/core";
import { InvalidGenerationParamError } from "./errors";

/** Sampling parameters of one generation request. */
export interface SamplingParams {
  /** Sample (true) or decode greedily (false). Default true (GRPO samples). HF's default is false. */
  doSample?: boolean;
  /** Softmax temperature, > 0 when sampling (logits are divided by it). Default 1.0. Ignored by greedy decoding. */
  temperature?: number;
  /** Keep only the k most likely tokens (ties with the k-th are kept, as in HF). 0 = off. Default 0. Must be >= 0. */
  topK?: number;
  /** Nucleus sampling: keep the smallest set of most likely tokens whose probability mass reaches topP. In (0, 1]; 1 = off. Default 1.0. */
  topP?: number;
  /** Drop tokens whose probability is below minP × (probability of the most likely token). In [0, 1]; 0 = off. Default 0. */
  minP?: number;
  /**
   * HF repetition penalty (CTRL paper): for every token id already present in the prompt or the completion so far,
   * a positive logit is divided by it and a negative one multiplied by it. > 0; 1 = off. Default 1.0.
   */
  repetitionPenalty?: number;
  /**
   * Token ids that are never chosen (HF `suppress_tokens`: their logits are set to -inf before greedy or sampled
   * selection). The returned log-probs stay those of the raw model distribution. Default [] (none).
   */
  suppressTokens?: number[];
}

/** `SamplingParams` with every default filled in. */
export type ResolvedSamplingParams = Required<SamplingParams>;

function bad(field: string, value: unknown, expected: string): never {
  throw new InvalidGenerationParamError(`Generation parameter ${field} = ${String(value)} is out of range: expected ${expected}`, {
    code: "GENERATION_BAD_PARAM",
    details: { field, value, expected },
  });
}

/** Fills defaults and validates; throws `InvalidGenerationParamError` naming the field. */
export function resolveSamplingParams(p: SamplingParams = {}): ResolvedSamplingParams {
  const r: ResolvedSamplingParams = {
    doSample: p.doSample ?? true,
    temperature: p.temperature ?? 1.0,
    topK: p.topK ?? 0,
    topP: p.topP ?? 1.0,
    minP: p.minP ?? 0,
    repetitionPenalty: p.repetitionPenalty ?? 1.0,
    suppressTokens: p.suppressTokens ?? [],
  };
  if (typeof r.doSample !== "boolean") bad("doSample", r.doSample, "a boolean");
  if (r.doSample && !(Number.isFinite(r.temperature) && r.temperature > 0)) bad("temperature", r.temperature, "a finite number > 0 when sampling (use doSample: false for greedy)");
  if (!(Number.isInteger(r.topK) && r.topK >= 0)) bad("topK", r.topK, "an integer >= 0 (0 = off)");
  if (!(r.topP > 0 && r.topP <= 1)) bad("topP", r.topP, "a number in (0, 1]");
  if (!(r.minP >= 0 && r.minP <= 1)) bad("minP", r.minP, "a number in [0, 1]");
  if (!(Number.isFinite(r.repetitionPenalty) && r.repetitionPenalty > 0)) bad("repetitionPenalty", r.repetitionPenalty, "a finite number > 0 (1 = off)");
  if (!Array.isArray(r.suppressTokens) || !r.suppressTokens.every((t) => Number.isInteger(t) && t >= 0)) bad("suppressTokens", r.suppressTokens, "an array of token ids (integers >= 0)");
  return r;
}

/** log(sum(exp(x))) over a row, stable. */
export function logSumExp(x: ArrayLike<number>): number {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < x.length; i++) if (x[i] > m) m = x[i];
  if (m === Number.NEGATIVE_INFINITY) return m;
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - m);
  return m + Math.log(s);
}

/** Log-softmax of `x` at index `id`. */
export function logSoftmaxAt(x: ArrayLike<number>, id: number): number {
  return x[id] - logSumExp(x);
}

/** Index of the largest value (first one on ties, like torch.argmax on CPU). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  let bv = x[0];
  for (let i = 1; i < x.length; i++) {
    if (x[i] > bv) {
      bv = x[i];
      best = i;
    }
  }
  return best;
}

/**
 * HF repetition penalty, in place: for each distinct id in `seen`, logit > 0 -> logit / penalty, else logit × penalty.
 * (`seen` may hold duplicates; each id is penalised once.)
 */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  const done = new Set<number>();
  for (const id of seen) {
    if (done.has(id) || id < 0 || id >= logits.length) continue;
    done.add(id);
    const v = logits[id];
    logits[id] = v < 0 ? v * penalty : v / penalty;
  }
}

/**
 * A sparse set of surviving tokens: ids and their (processed) logits. Tokens not listed have logit -inf.
 * Full-vocab rows start with every id; the warpers shrink it.
 */
export interface Candidates {
  ids: Int32Array;
  logits: Float32Array;
}

/** All ids of a row whose logit is finite. */
export function allCandidates(logits: Float32Array): Candidates {
  let n = 0;
  for (let i = 0; i < logits.length; i++) if (logits[i] > Number.NEGATIVE_INFINITY) n++;
  const ids = new Int32Array(n);
  const vals = new Float32Array(n);
  let j = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (v > Number.NEGATIVE_INFINITY) {
      ids[j] = i;
      vals[j++] = v;
    }
  }
  return { ids, logits: vals };
}

function subset(c: Candidates, keep: (i: number) => boolean): Candidates {
  let n = 0;
  for (let i = 0; i < c.ids.length; i++) if (keep(i)) n++;
  if (n === c.ids.length) return c;
  const ids = new Int32Array(n);
  const vals = new Float32Array(n);
  let j = 0;
  for (let i = 0; i < c.ids.length; i++) {
    if (keep(i)) {
      ids[j] = c.ids[i];
      vals[j++] = c.logits[i];
    }
  }
  return { ids, logits: vals };
}

/** Divides every logit by `temperature` (HF TemperatureLogitsWarper), in float32 like torch. */
export function applyTemperature(c: Candidates, temperature: number): Candidates {
  if (temperature === 1) return c;
  const vals = new Float32Array(c.logits.length);
  for (let i = 0; i < vals.length; i++) vals[i] = c.logits[i] / temperature;
  return { ids: c.ids, logits: vals };
}

/** The k-th largest value of `x` (1-based k <= x.length), via a size-k min-heap: O(n log k). */
export function kthLargest(x: Float32Array, k: number): number {
  const heap = new Float32Array(k);
  let size = 0;
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && heap[l] < heap[m]) m = l;
      if (r < size && heap[r] < heap[m]) m = r;
      if (m === i) return;
      const t = heap[i];
      heap[i] = heap[m];
      heap[m] = t;
      i = m;
    }
  };
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (size < k) {
      let j = size++;
      heap[j] = v;
      while (j > 0) {
        const p = (j - 1) >> 1;
        if (heap[p] <= heap[j]) break;
        const t = heap[p];
        heap[p] = heap[j];
        heap[j] = t;
        j = p;
      }
    } else if (v > heap[0]) {
      heap[0] = v;
      down(0);
    }
  }
  return heap[0];
}

/** HF TopKLogitsWarper: removes tokens whose logit is below the k-th largest (ties kept). k = 0 or k >= n: no-op. */
export function applyTopK(c: Candidates, k: number): Candidates {
  if (k <= 0 || k >= c.ids.length) return c;
  const kth = kthLargest(c.logits, k);
  return subset(c, (i) => c.logits[i] >= kth);
}

/** Softmax probabilities of the candidates (float64 accumulation). */
export function candidateProbs(c: Candidates): Float64Array {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < c.logits.length; i++) if (c.logits[i] > m) m = c.logits[i];
  const p = new Float64Array(c.logits.length);
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    p[i] = Math.exp(c.logits[i] - m);
    s += p[i];
  }
  for (let i = 0; i < p.length; i++) p[i] /= s;
  return p;
}

/**
 * HF TopPLogitsWarper: sort ascending, remove tokens whose cumulative probability is <= 1 - topP, always keep
 * the most likely one. Equivalently (descending): keep the most likely tokens until their mass reaches topP.
 * Only the tokens that can matter are sorted: a threshold is lowered until the mass above it reaches topP.
 */
export function applyTopP(c: Candidates, topP: number): Candidates {
  if (topP >= 1 || c.ids.length <= 1) return c;
  const p = candidateProbs(c);
  let pmax = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > pmax) pmax = p[i];
  // Find a threshold t whose super-level set {p >= t} carries at least topP of the mass.
  let t = pmax;
  for (;;) {
    let mass = 0;
    for (let i = 0; i < p.length; i++) if (p[i] >= t) mass += p[i];
    if (mass >= topP || t === 0) break;
    t = t < 1e-30 ? 0 : t / 8;
  }
  const idx: number[] = [];
  for (let i = 0; i < p.length; i++) if (p[i] >= t) idx.push(i);
  // Descending by probability; ties by id (stable for determinism).
  idx.sort((a, b) => p[b] - p[a] || c.ids[a] - c.ids[b]);
  // Ascending cumulative mass of everything below position j = 1 - (mass of idx[0..j]) ; HF removes token j when
  // the ascending cumsum up to and including it is <= 1 - topP, i.e. when the mass strictly above it is >= topP.
  const keep = new Uint8Array(p.length);
  let above = 0;
  for (let j = 0; j < idx.length; j++) {
    if (j > 0 && above >= topP) break;
    keep[idx[j]] = 1;
    above += p[idx[j]];
  }
  return subset(c, (i) => keep[i] === 1);
}

/** HF MinPLogitsWarper: remove tokens with probability < minP × max probability (the top token always survives). */
export function applyMinP(c: Candidates, minP: number): Candidates {
  if (minP <= 0 || c.ids.length <= 1) return c;
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < c.logits.length; i++) if (c.logits[i] > m) m = c.logits[i];
  // p_i / p_max = exp(l_i - l_max)
  const cut = Math.log(minP);
  return subset(c, (i) => c.logits[i] - m >= cut);
}

/** Applies the sampling warpers in HF order: temperature, top-k, top-p, min-p. */
export function warp(logits: Float32Array, p: ResolvedSamplingParams): Candidates {
  let c = allCandidates(logits);
  c = applyTemperature(c, p.temperature);
  c = applyTopK(c, p.topK);
  c = applyTopP(c, p.topP);
  c = applyMinP(c, p.minP);
  return c;
}

/**
 * Picks the next token for one row.
 * @param logits raw last-position logits (not modified).
 * @param seen token ids already in the prompt and the completion (for the repetition penalty).
 * @param rng the row's generator (used only when sampling).
 */
export function selectToken(logits: Float32Array, seen: Iterable<number>, p: ResolvedSamplingParams, rng: Rng | null): number {
  let row = logits;
  if (p.repetitionPenalty !== 1) {
    row = logits.slice();
    applyRepetitionPenalty(row, seen, p.repetitionPenalty);
  }
  if (!p.doSample) return argmax(row);
  if (!rng) throw new InvalidGenerationParamError("selectToken: sampling needs an Rng", { code: "GENERATION_NO_RNG", details: { field: "rng" } });
  const c = warp(row, p);
  const probs = candidateProbs(c);
  return c.ids[rng.categorical(probs)];
}

/** Result of {@link sampleRow}: the chosen id and its log-prob under the raw (unprocessed) logits. */
export interface RowChoice {
  token: number;
  /** log_softmax(raw logits)[token]. */
  logprob: number;
}

/**
 * The O(V) pass over one raw logits row that {@link sampleRow} needs: max, argmax (first on ties), and the float64
 * sum of exp(x - max), whose terms are left in `scratch[0..V)` (for plain softmax sampling).
 */
export interface RowPass {
  max: number;
  argmax: number;
  /** sum_i exp(raw[i] - max), accumulated in float64. */
  sumExp: number;
}

/** 2^n for n = -199 .. 0 (index n + 199). */
const POW2_NEG = Float64Array.from({ length: 200 }, (_, i) => 2 ** (i - 199));
/** 1.5 · 2^52: adding and subtracting it rounds a float64 of magnitude < 2^51 to the nearest integer. */
const ROUND_SHIFT = 6755399441055744;

/**
 * exp(x) for x <= 0, relative error below 1e-8 against Math.exp (tested), about twice as fast as Math.exp in V8:
 * x·log2(e) = n + r with n = round(x·log2(e)), |r| <= 1/2, so exp(x) = 2^n · e^(r·ln 2), the last factor by its
 * degree-7 Taylor polynomial (|r·ln 2| <= 0.347: truncation error < 7e-9). Returns 0 below -87 (exp(-87) = 1.6e-38,
 * under float32's smallest normal; the O(V) sums below add at most V·1.6e-38 there, to a sum >= 1).
 */
export function expNonPositive(x: number): number {
  if (!(x >= -87)) return 0;
  const t = x * Math.LOG2E;
  const n = t + ROUND_SHIFT - ROUND_SHIFT;
  const f = (t - n) * Math.LN2;
  const p = 1 + f * (1 + f * (0.5 + f * (1 / 6 + f * (1 / 24 + f * (1 / 120 + f * (1 / 720 + f * (1 / 5040)))))));
  return p * POW2_NEG[n + 199];
}

/**
 * Computes {@link RowPass} of `raw`, writing exp(raw[i] - max) into `scratch` (at least V entries). The exps use
 * {@link expNonPositive} (relative error < 1e-8, so log-probs within ~1e-8 of Math.exp's): this pass runs over the
 * whole vocabulary for every row at every decode step, and Math.exp was most of its time.
 */
export function rowPass(raw: Float32Array, scratch: Float32Array): RowPass {
  const V = raw.length;
  let m = raw[0];
  let am = 0;
  for (let i = 1; i < V; i++) {
    const v = raw[i];
    if (v > m) {
      m = v;
      am = i;
    }
  }
  let s = 0;
  for (let i = 0; i < V; i++) {
    const e = expNonPositive(raw[i] - m);
    scratch[i] = e;
    s += e;
  }
  return { max: m, argmax: am, sumExp: s };
}

/**
 * Picks the next token of one row and returns it with its raw log-prob, in as few O(V) passes as possible:
 * one pass for max/argmax, one exp pass for the log-sum-exp (whose exp values are reused to sample when no
 * warper or penalty changes the distribution), and the general warper path otherwise.
 * @param scratch a reusable Float32Array of at least V entries (avoids an allocation per row and step).
 * @param pass the result of `rowPass(raw, scratch)` when the caller already has it (rows that share one logits
 *   row, e.g. the G samples of a prompt right after the prefill: `scratch` must still hold that pass's exp
 *   values); computed here otherwise. Either way the result is the same.
 */
export function sampleRow(raw: Float32Array, seen: Iterable<number>, p: ResolvedSamplingParams, rng: Rng | null, scratch: Float32Array, pass?: RowPass): RowChoice {
  const V = raw.length;
  const { max: m, argmax: am, sumExp: s } = pass ?? rowPass(raw, scratch);
  const lse = m + Math.log(s);
  const penalised = p.repetitionPenalty !== 1;
  let token: number;
  if (p.suppressTokens.length > 0) {
    // Selection over a copy with the suppressed ids at -inf; the log-prob below stays the raw distribution's.
    const row = raw.slice();
    for (const id of p.suppressTokens) if (id < V) row[id] = Number.NEGATIVE_INFINITY;
    token = selectToken(row, seen, p, p.doSample ? rng : null);
  } else if (!p.doSample) {
    token = penalised ? selectToken(raw, seen, p, null) : am;
  } else if (isPlainSampling(p)) {
    if (!rng) throw new InvalidGenerationParamError("sampleRow: sampling needs an Rng", { code: "GENERATION_NO_RNG", details: { field: "rng" } });
    // Plain softmax sampling: inverse CDF over the exp values already computed.
    let u = rng.random() * s;
    token = V - 1;
    for (let i = 0; i < V; i++) {
      u -= scratch[i];
      if (u < 0) {
        token = i;
        break;
      }
    }
  } else {
    token = selectToken(raw, seen, p, rng);
  }
  return { token, logprob: raw[token] - lse };
}

/**
 * True when `p` samples from the raw softmax (temperature 1, no top-k / top-p / min-p, no repetition penalty, no
 * suppressed ids): the distribution is then softmax(logits) itself, which the backend can compute (vectorised) in
 * place of the host's max / exp pass (see {@link sampleFromProbs}).
 */
export function isPlainSampling(p: ResolvedSamplingParams): boolean {
  return p.doSample && p.temperature === 1 && p.topK === 0 && p.topP >= 1 && p.minP <= 0 && p.repetitionPenalty === 1 && p.suppressTokens.length === 0;
}

/**
 * Plain sampling from a row of softmax probabilities: inverse CDF with one `rng.random()` (as {@link sampleRow}'s
 * plain path), and the chosen token's log-prob log(p[token]). A draw that the row's float32 rounding leaves beyond
 * the total mass takes the last token with p > 0.
 */
export function sampleFromProbs(probs: Float32Array, rng: Rng): RowChoice {
  let u = rng.random();
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    const q = probs[i];
    if (q > 0) last = i;
    u -= q;
    if (u < 0) return { token: i, logprob: Math.log(q) };
  }
  if (last < 0) throw new InvalidGenerationParamError("sampleFromProbs: the probability row has no mass", { code: "GENERATION_BAD_PROBS", details: { field: "probs" } });
  return { token: last, logprob: Math.log(probs[last]) };
}
