/**
 * KV-cached generation for Qwen2-VL: one prefill of a (left-padded) batch of prompts, the cache broadcast to G
 * samples per prompt, then one token per step for every row.
 */
import fs from "node:fs";
import path from "node:path";
import { type DeviceSamplingParams, deviceSamplingAvailable, Rng, sampleRowsOnDevice, webgpuBindingLimit } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { type KVCache, type Qwen2VLForConditionalGeneration, shareCache } from "../qwen2_vl/model";
import type { ImageInput } from "../qwen2_vl/image";
import { InvalidGenerationParamError, SequenceTooLongError } from "./errors";
import { headLogits } from "./lm_head";
import { isPlainSampling, type ResolvedSamplingParams, type RowPass, resolveSamplingParams, rowPass, type SamplingParams, sampleFromProbs, sampleRow } from "./sampling";
import { type FinishReason, StopTracker } from "./stopping";
import type { TokenizedPrompt } from "./types";

/** A prompt given as text (with `<|image_pad|>` slots, e.g. from the chat template) plus its images; needs a processor. */
export interface TextPrompt {
  text: string;
  images?: ImageInput[];
}

/** One prompt of a request: token ids (+ pixels) or text (+ images). */
export type PromptInput = TokenizedPrompt | TextPrompt;

/** What generate() needs from the processor: tokenization of text prompts and decoding of completions. */
export interface GenerationProcessor {
  process(input: { text: string; images?: ImageInput[] }): Promise<{
    inputIds: number[][];
    pixelValues: Float32Array;
    imageGridThw: number[][];
  }>;
  tokenizer: {
    decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): Promise<string>;
    specialIds: { eos: number | null; pad: number | null };
  };
}

/** A generation request. Sampling fields: see {@link SamplingParams}. */
export interface GenerateRequest extends SamplingParams {
  /** The prompts (a batch is left-padded to its longest prompt). At least one. */
  prompts: PromptInput[];
  /** Samples per prompt (GRPO's G), sharing one prefill. Default 1. (Paper: not stated; TRL's default is 8.) */
  numSamples?: number;
  /** Most new tokens per sample, >= 1. Default 256. */
  maxNewTokens?: number;
  /** Seed of the request's Rng; every row gets its own stream forked from it in row order. Default 0. */
  seed?: number;
  /** Strings that end a sample; they are cut from the returned text (not from ids). Default none. */
  stopStrings?: string[];
  /**
   * Ids that end a sample. Default: config.json's eos_token_id plus the tokenizer's eos token
   * (use {@link loadGenerationConfig} to take generation_config.json's list, [151645, 151643] for Qwen2-VL).
   */
  eosTokenIds?: number[];
  /** Id used to left-pad prompts (masked out). Default: the tokenizer's pad id, else 151643. */
  padTokenId?: number;
  /**
   * Compute the last-position logits with a transposed [H, V] copy of the lm_head weight, kept per model (4-5x
   * faster per step on wasm; costs V·H·4 bytes once, see ./lm_head.ts). Default true.
   */
  transposedLmHead?: boolean;
}

/** One generated sample. */
export interface GeneratedSample {
  /** Index of the prompt in the request. */
  promptIndex: number;
  /** Index of the sample among the prompt's G samples. */
  sampleIndex: number;
  /** Generated ids (an ending EOS id included). */
  ids: number[];
  /** Decoded ids (special tokens skipped), cut before a matched stop string. */
  text: string;
  /**
   * Per generated id: log-softmax of the model's raw logits (before repetition penalty, temperature and the
   * warpers) at that id. This is what vLLM reports by default
   * (`logprobs_mode = raw_logprobs`), so it can serve as the "old policy" log-prob of the sample.
   * (TRL's GRPO trainer recomputes log-probs with the logits divided by the sampling temperature; for that
   * convention call completionLogprobs with `temperature`.)
   */
  logprobs: number[];
  /** "stop" (EOS id or stop string) or "length" (maxNewTokens). */
  finishReason: FinishReason;
}

/** Timing and counters of one generate() call. */
export interface GenerateStats {
  /** Forward passes over the full prompts (always 1). */
  prefillCalls: number;
  /** Forward passes of one new token per row. */
  decodeSteps: number;
  /** Rows decoded together at the start (prompts × samples). */
  rows: number;
  /** Sum over decode steps of the rows fed (finished rows leave the batch). */
  decodedRows: number;
  /** Times finished rows were dropped from the cache. */
  compactions: number;
  prefillMs: number;
  decodeMs: number;
}

/** Result of generate(): `samples[p][g]` is sample g of prompt p. */
export interface GenerateResult {
  samples: GeneratedSample[][];
  stats: GenerateStats;
}

/** The fields of generation_config.json that generation uses. */
export interface GenerationConfigFile {
  /** `eos_token_id` as a list. */
  eosTokenIds: number[];
  /** `pad_token_id`, or null. */
  padTokenId: number | null;
}

/** Reads `<dir>/generation_config.json` (null when absent). */
export function loadGenerationConfig(dir: string): GenerationConfigFile | null {
  const file = path.join(dir, "generation_config.json");
  if (!fs.existsSync(file)) return null;
  let raw: any;
  try {
    raw = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new InvalidGenerationParamError(`${file}: not valid JSON: ${(e as Error).message}`, { code: "GENERATION_CONFIG", details: { file }, cause: e });
  }
  const eos = raw.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? eos.filter((x: unknown) => Number.isInteger(x)) : Number.isInteger(eos) ? [eos] : [];
  return { eosTokenIds, padTokenId: Number.isInteger(raw.pad_token_id) ? raw.pad_token_id : null };
}

function isTokenized(p: PromptInput): p is TokenizedPrompt {
  return Array.isArray((p as TokenizedPrompt).inputIds);
}

async function tokenizePrompts(prompts: PromptInput[], processor: GenerationProcessor | null): Promise<TokenizedPrompt[]> {
  const out: TokenizedPrompt[] = [];
  for (let i = 0; i < prompts.length; i++) {
    const p = prompts[i];
    if (isTokenized(p)) {
      out.push(p);
      continue;
    }
    if (typeof (p as TextPrompt).text !== "string") {
      throw new InvalidGenerationParamError(`prompts[${i}] has neither inputIds (number[]) nor text (string)`, { code: "GENERATION_BAD_PROMPT", details: { field: `prompts[${i}]` } });
    }
    if (!processor) {
      throw new InvalidGenerationParamError(`prompts[${i}] is text, which needs a processor`, { code: "GENERATION_BAD_PROMPT", details: { field: "processor" } });
    }
    const r = await processor.process({ text: (p as TextPrompt).text, images: (p as TextPrompt).images });
    out.push({ inputIds: r.inputIds[0], pixelValues: r.pixelValues, imageGridThw: r.imageGridThw });
  }
  return out;
}

/** A left-padded batch of prompts as model inputs (tensors owned by the caller). */
export interface PromptBatch {
  inputIds: tf.Tensor2D;
  attentionMask: tf.Tensor2D;
  pixelValues?: tf.Tensor2D;
  imageGridThw?: number[][];
  /** Padded length. */
  length: number;
}

/**
 * Left-pads prompts (and optional right-appended completions) into one batch; concatenates their images in order
 * (`withPixels: false` skips the pixel tensor, for callers that pass image embeddings instead).
 */
export function buildBatch(prompts: TokenizedPrompt[], padId: number, completions?: number[][], withPixels = true): PromptBatch & { completionLength: number } {
  const P = prompts.length;
  const Lp = Math.max(...prompts.map((p) => p.inputIds.length));
  const Lc = completions ? Math.max(...completions.map((c) => c.length)) : 0;
  const S = Lp + Lc;
  const ids = new Int32Array(P * S).fill(padId);
  const mask = new Int32Array(P * S);
  const grids: number[][] = [];
  const pixels: Float32Array[] = [];
  let patchDim = 0;
  prompts.forEach((p, b) => {
    const off = b * S + (Lp - p.inputIds.length);
    p.inputIds.forEach((t, i) => {
      ids[off + i] = t;
      mask[off + i] = 1;
    });
    if (completions) {
      completions[b].forEach((t, i) => {
        ids[b * S + Lp + i] = t;
        mask[b * S + Lp + i] = 1;
      });
    }
    if (p.pixelValues && p.pixelValues.length > 0) {
      const g = p.imageGridThw ?? [];
      const n = g.reduce((a, x) => a + x[0] * x[1] * x[2], 0);
      if (n === 0 || p.pixelValues.length % n !== 0) {
        throw new InvalidGenerationParamError(`prompts[${b}]: pixelValues has ${p.pixelValues.length} values, not a multiple of the ${n} patches of imageGridThw`, {
          code: "GENERATION_BAD_PROMPT",
          details: { field: `prompts[${b}].pixelValues`, row: b },
        });
      }
      const d = p.pixelValues.length / n;
      if (patchDim && d !== patchDim) throw new InvalidGenerationParamError(`prompts[${b}]: patch size ${d} differs from ${patchDim}`, { code: "GENERATION_BAD_PROMPT", details: { row: b } });
      patchDim = d;
      pixels.push(p.pixelValues);
      grids.push(...g);
    }
  });
  const out: PromptBatch & { completionLength: number } = {
    inputIds: tf.tensor2d(ids, [P, S], "int32"),
    attentionMask: tf.tensor2d(mask, [P, S], "int32"),
    length: S,
    completionLength: Lc,
  };
  if (pixels.length > 0) out.imageGridThw = grids;
  if (pixels.length > 0 && withPixels) {
    const total = pixels.reduce((a, x) => a + x.length, 0);
    const all = new Float32Array(total);
    let o = 0;
    for (const x of pixels) {
      all.set(x, o);
      o += x.length;
    }
    out.pixelValues = tf.tensor2d(all, [total / patchDim, patchDim]);
  }
  return out;
}

/**
 * Selection on the device (webgpu): which logits row each output row samples from, its draw, and the parameters.
 * Only the chosen ids and their raw log-probs come back, never a [B, V] logits row.
 */
interface DevicePick {
  params: DeviceSamplingParams;
  /** Logits row of each output row (after the prefill, the G samples of a prompt share its row); null = identity. */
  rowSrc: number[] | null;
  /** One uniform draw per output row (ignored when greedy). */
  u: number[];
  /** [V] float32: 1 = may be chosen, 0 = suppressed (none: every id). */
  allowed?: tf.Tensor1D;
}

/**
 * Runs the model and returns the last position's logits on the host ([B·V], row-major), computing the lm_head only
 * there (forward with skipLogits, then {@link headLogits}); with `probs`, their softmax instead (computed by the
 * backend: for plain sampling it replaces the host's O(V) max / exp pass per row). With `device`, the rows' tokens are
 * chosen on the device (see {@link DevicePick}) and only `picks` come back.
 */
async function lastPositionLogits(
  model: Qwen2VLForConditionalGeneration,
  args: Parameters<Qwen2VLForConditionalGeneration["forward"]>[0],
  transposed: boolean,
  probs = false,
  device?: DevicePick,
): Promise<{ logits: Float32Array; cache: KVCache | undefined; picks?: { ids: Int32Array; logprobs: Float32Array } }> {
  const out = model.forward({ ...args, skipLogits: true, outputHiddenStates: true });
  try {
    const hs = out.hiddenStates!;
    const h = hs[hs.length - 1];
    const [B, S, H] = h.shape;
    if (device) {
      // One kernel per step (RarlSampleRows): the ids and raw log-probs of the rows, 2 floats per row read back.
      const picked = tf.tidy(() => {
        const hl = tf.reshape(tf.slice(h, [0, S - 1, 0], [B, 1, H]), [B, H]) as tf.Tensor2D;
        const n = device.u.length;
        // Rows per kernel call so that one call's [rows, V] logits stay within one storage binding (8 x 151936
        // floats are 4.9 MB); beyond it, the lm_head runs per group of rows too.
        const per = Math.max(1, Math.floor(webgpuBindingLimit() / (model.config.vocabSize * 4)));
        const src = device.rowSrc;
        if (n <= per) {
          const l = headLogits(model, hl, transposed);
          return sampleRowsOnDevice(src ? (tf.gather(l, tf.tensor1d(src, "int32")) as tf.Tensor2D) : l, device.u, device.params, device.allowed);
        }
        const parts: tf.Tensor2D[] = [];
        for (let s = 0; s < n; s += per) {
          const g = Math.min(per, n - s);
          const hg = src ? (tf.gather(hl, tf.tensor1d(src.slice(s, s + g), "int32")) as tf.Tensor2D) : (tf.slice(hl, [s, 0], [g, H]) as tf.Tensor2D);
          parts.push(sampleRowsOnDevice(headLogits(model, hg, transposed), device.u.slice(s, s + g), device.params, device.allowed));
        }
        return tf.concat(parts, 0) as tf.Tensor2D;
      });
      try {
        const v = (await picked.data()) as Float32Array;
        const n = v.length / 2;
        const ids = Int32Array.from({ length: n }, (_, i) => v[2 * i]);
        const lps = Float32Array.from({ length: n }, (_, i) => v[2 * i + 1]);
        return { logits: new Float32Array(0), cache: out.pastKeyValues, picks: { ids, logprobs: lps } };
      } finally {
        picked.dispose();
      }
    }
    const logits = tf.tidy(() => {
      const l = headLogits(model, tf.reshape(tf.slice(h, [0, S - 1, 0], [B, 1, H]), [B, H]) as tf.Tensor2D, transposed);
      return probs ? tf.softmax(l) : l;
    });
    // An async read: GPU backends (webgpu) have no synchronous read-back in Node.
    try {
      return { logits: (await logits.data()) as Float32Array, cache: out.pastKeyValues };
    } finally {
      logits.dispose();
    }
  } finally {
    out.logits.dispose();
    tf.dispose(out.hiddenStates ?? []);
  }
}

function validateRequest(req: GenerateRequest, maxPos: number, prompts: TokenizedPrompt[]): { G: number; maxNew: number } {
  const G = req.numSamples ?? 1;
  const maxNew = req.maxNewTokens ?? 256;
  if (!(Number.isInteger(G) && G >= 1)) throw new InvalidGenerationParamError(`Generation parameter numSamples = ${G} is out of range: expected an integer >= 1`, { code: "GENERATION_BAD_PARAM", details: { field: "numSamples", value: G } });
  if (!(Number.isInteger(maxNew) && maxNew >= 1)) {
    throw new InvalidGenerationParamError(`Generation parameter maxNewTokens = ${maxNew} is out of range: expected an integer >= 1`, {
      code: "GENERATION_BAD_PARAM",
      details: { field: "maxNewTokens", value: maxNew, expected: "an integer >= 1" },
    });
  }
  if (prompts.length === 0) throw new InvalidGenerationParamError("prompts is empty", { code: "GENERATION_BAD_PROMPT", details: { field: "prompts" } });
  prompts.forEach((p, i) => {
    if (p.inputIds.length === 0) throw new InvalidGenerationParamError(`prompts[${i}] has no tokens`, { code: "GENERATION_BAD_PROMPT", details: { field: `prompts[${i}]`, row: i } });
    if (p.inputIds.length + maxNew > maxPos) {
      throw new SequenceTooLongError(
        `prompts[${i}] has ${p.inputIds.length} tokens; with maxNewTokens ${maxNew} that is ${p.inputIds.length + maxNew} positions, more than the model's max_position_embeddings ${maxPos}`,
        { code: "SEQUENCE_TOO_LONG", details: { row: i, promptLength: p.inputIds.length, maxNewTokens: maxNew, limit: maxPos } },
      );
    }
  });
  return { G, maxNew };
}

/**
 * Generates `numSamples` completions for each prompt.
 *
 * One prefill runs over the left-padded batch of prompts (vision tower included) and keeps only the last
 * position's logits; the prompt's KV cache is then shared by G rows (row p·G + g = sample g of prompt p; see
 * shareCache: the prompt keys are stored once and attended with per-prompt products), and
 * each step feeds one token per live row through the cache. A row that finishes leaves the batch (its cache rows are
 * dropped), so long and short completions do not cost the short ones' steps. Logits processing and sampling run on the host per row
 * (see ./sampling.ts), seeded by one Rng per request, forked per row; on webgpu (every option but the repetition
 * penalty) they run on the device with the same rules and the same per-row draws (@rarl/core's sampleRowsOnDevice), and
 * each step reads back only the ids and their log-probs.
 *
 * @param model the Qwen2-VL model.
 * @param processor needed for text prompts and to decode texts; may be null for tokenized prompts, then `text` is "".
 */
export async function generate(model: Qwen2VLForConditionalGeneration, processor: GenerationProcessor | null, request: GenerateRequest): Promise<GenerateResult> {
  const params: ResolvedSamplingParams = resolveSamplingParams(request);
  const cfg = model.config;
  const prompts = await tokenizePrompts(request.prompts, processor);
  const { G, maxNew } = validateRequest(request, cfg.maxPositionEmbeddings, prompts);
  const stopStrings = request.stopStrings ?? [];
  if (stopStrings.length > 0 && !processor) {
    throw new InvalidGenerationParamError("stopStrings need a processor (to decode the text)", { code: "GENERATION_BAD_PARAM", details: { field: "stopStrings" } });
  }
  const eos = request.eosTokenIds ?? [
    ...new Set([...(Array.isArray(cfg.eosTokenId) ? cfg.eosTokenId : [cfg.eosTokenId]), ...(processor?.tokenizer.specialIds.eos != null ? [processor.tokenizer.specialIds.eos] : [])]),
  ];
  const padId = request.padTokenId ?? processor?.tokenizer.specialIds.pad ?? 151643;
  const transposed = request.transposedLmHead ?? true;
  const V = cfg.vocabSize;
  const P = prompts.length;
  const R = P * G;
  const decode = (ids: number[]) => (processor ? processor.tokenizer.decode(ids, { skipSpecialTokens: true }) : Promise.resolve(""));

  const rng = new Rng(request.seed ?? 0);
  const rows = Array.from({ length: R }, (_, r) => {
    const p = Math.floor(r / G);
    return {
      prompt: p,
      tracker: new StopTracker({ eosTokenIds: eos, stopStrings, maxNewTokens: maxNew }),
      rng: rng.fork(),
      seen: params.repetitionPenalty !== 1 ? new Set(prompts[p].inputIds) : null,
    };
  });
  const stats: GenerateStats = { prefillCalls: 0, decodeSteps: 0, rows: R, decodedRows: 0, compactions: 0, prefillMs: 0, decodeMs: 0 };
  const scratch = new Float32Array(V);
  // Plain sampling (temperature 1, no warper, penalty or suppressed id) reads softmax probabilities, not logits.
  const plain = isPlainSampling(params);
  // On webgpu every configuration but the repetition penalty (which needs each row's seen ids) selects on the device:
  // each step reads back B ids and B raw log-probs instead of B x V logits (GPU read-back is the slow part of a step).
  // Each sampled row still takes one draw of its own Rng per step, so a seed means the same on every backend.
  const onDevice = params.repetitionPenalty === 1 && deviceSamplingAvailable();
  const deviceParams: DeviceSamplingParams = { greedy: !params.doSample, temperature: params.temperature, topK: params.topK, topP: params.topP, minP: params.minP };
  const suppressed = params.suppressTokens.filter((t) => t < V);
  // Suppressed ids as a [V] mask (1 = may be chosen), made once per request; disposed below.
  let allowedT: tf.Tensor1D | undefined;
  if (onDevice && suppressed.length > 0) {
    const mask = new Float32Array(V).fill(1);
    for (const t of suppressed) mask[t] = 0;
    allowedT = tf.tensor1d(mask);
  }
  const pick = (active: number[], rowSrc: number[] | null): DevicePick | undefined =>
    onDevice ? { params: deviceParams, rowSrc, u: active.map((r) => (params.doSample ? rows[r].rng.random() : 0)), allowed: allowedT } : undefined;
  let picks: { ids: Int32Array; logprobs: Float32Array } | undefined;

  // Prefill.
  let t0 = performance.now();
  const batch = buildBatch(prompts, padId);
  let cache: KVCache | undefined;
  let logits: Float32Array;
  try {
    const out = await lastPositionLogits(
      model,
      { inputIds: batch.inputIds, attentionMask: batch.attentionMask, pixelValues: batch.pixelValues, imageGridThw: batch.imageGridThw, useCache: true },
      transposed,
      plain,
      pick(
        rows.map((_, r) => r),
        G > 1 ? rows.map((_, r) => Math.floor(r / G)) : null,
      ),
    );
    stats.prefillCalls++;
    cache = out.cache!;
    logits = out.logits; // [P, V]
    picks = out.picks;
    // The decode steps attend to the prompt positions through a shared prefix (one copy per prompt, for any G;
    // also at G = 1, so one and G samples run the same code).
    const shared = shareCache(cache, G);
    cache.dispose();
    cache = shared;
  } catch (e) {
    cache?.dispose();
    allowedT?.dispose();
    throw e;
  } finally {
    tf.dispose([batch.inputIds, batch.attentionMask, batch.pixelValues].filter((t) => t !== undefined) as tf.Tensor[]);
  }
  stats.prefillMs = performance.now() - t0;

  t0 = performance.now();
  try {
    // `active[a]` is the request row held by cache row a. After the prefill, logits row of request row r is
    // floor(r / G) (the G samples of a prompt share it); after a decode step it is the cache row a.
    let active = rows.map((_, r) => r);
    let afterPrefill = true;
    for (let step = 0; step < maxNew; step++) {
      // Right after the prefill the G samples of a prompt (consecutive rows) share one logits row: its O(V)
      // max / exp pass runs once and `scratch` keeps its exp values for the G picks (same result, G-1 fewer passes).
      let passBase = -1;
      let pass: RowPass | undefined;
      const chosen = active.map((r, a) => {
        if (picks) return { token: picks.ids[a], logprob: picks.logprobs[a] }; // one pick per active row
        const base = (afterPrefill ? Math.floor(r / G) : a) * V;
        const raw = logits.subarray(base, base + V);
        if (plain) return sampleFromProbs(raw, rows[r].rng); // `logits` holds probabilities here
        if (base !== passBase) {
          pass = rowPass(raw, scratch);
          passBase = base;
        }
        return sampleRow(raw, rows[r].seen ?? [], params, rows[r].rng, scratch, pass);
      });
      const texts = await Promise.all(active.map((r, a) => (rows[r].tracker.needsText ? decode([...rows[r].tracker.ids, chosen[a].token]) : Promise.resolve(undefined))));
      active.forEach((r, a) => {
        rows[r].tracker.push(chosen[a].token, chosen[a].logprob, texts[a]);
        rows[r].seen?.add(chosen[a].token);
      });
      // Finished rows leave the batch: their cache rows are dropped, so later steps only compute live rows.
      const keep: number[] = [];
      active.forEach((r, a) => {
        if (!rows[r].tracker.done) keep.push(a);
      });
      if (keep.length === 0) break;
      if (keep.length < active.length) {
        cache.keepRows(keep);
        stats.compactions++;
      }
      const next = Int32Array.from(keep, (a) => chosen[a].token);
      active = keep.map((a) => active[a]);
      const ids = tf.tensor2d(next, [active.length, 1], "int32");
      try {
        const step = await lastPositionLogits(model, { inputIds: ids, pastKeyValues: cache, useCache: true }, transposed, plain, pick(active, null));
        logits = step.logits; // [active, V] (empty when selecting on the device)
        picks = step.picks;
      } finally {
        ids.dispose();
      }
      stats.decodeSteps++;
      stats.decodedRows += active.length;
      afterPrefill = false;
    }
  } finally {
    cache.dispose();
    allowedT?.dispose();
  }
  stats.decodeMs = performance.now() - t0;

  const texts = await Promise.all(rows.map((row) => (row.tracker.cutText !== null ? Promise.resolve(row.tracker.cutText) : decode(row.tracker.ids))));
  const samples: GeneratedSample[][] = Array.from({ length: P }, () => []);
  rows.forEach((row, r) => {
    samples[row.prompt].push({
      promptIndex: row.prompt,
      sampleIndex: r % G,
      ids: row.tracker.ids,
      text: texts[r],
      logprobs: row.tracker.logprobs,
      finishReason: row.tracker.finishReason ?? "length",
    });
  });
  return { samples, stats };
}
