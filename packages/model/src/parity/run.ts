import path from "node:path";
import fs from "node:fs";
import * as tf from "@tensorflow/tfjs-core";
import { Qwen2VLProcessor } from "../qwen2_vl/processor";
import { maskedKeep, maxAbsDiff, toleranceFor, topIdMismatches, toRows } from "./compare";
import { ParityFixture, type RefTensor } from "./fixture";

/** Result of one compared field. `max_abs_diff` is null when the field could not be computed. */
export interface FieldResult {
  max_abs_diff: number | null;
  tol: number;
  /** Why the field was not computed, or how it was compared. */
  note?: string;
}

export type CaseStatus = "PASS" | "FAIL" | "NOT RUN";

export interface CaseResult {
  status: CaseStatus;
  fields: Record<string, FieldResult>;
  /** Why the case is NOT RUN or FAIL (missing capability, error message). */
  reason?: string;
}

export interface ParityReport {
  overall: "PASS" | "FAIL";
  cases: Record<string, CaseResult>;
}

/** A prompt as the model-side capabilities take it. */
export interface ParityPrompt {
  inputIds: number[];
  pixelValues?: Float32Array;
  imageGridThw?: number[][];
}

/** Output of a forward pass, as the parity tool reads it. */
export interface ParityForward {
  logits: tf.Tensor3D;
  hiddenStates?: tf.Tensor3D[];
  ropeDeltas?: number[];
}

/**
 * What the parity tool needs from the model code. Each piece is optional: a case whose capability is
 * missing is NOT RUN (and the report FAILs). {@link discoverParityApi} fills it from @rarl/model's exports.
 */
export interface ParityApi {
  /** Loads the checkpoint in `dir`. */
  loadModel?(dir: string, opts: { tokenizerPath?: string }): Promise<{ model: any; config?: any }>;
  /** Full forward pass. */
  forward?(
    model: any,
    args: { inputIds: number[][]; attentionMask: number[][]; pixelValues?: Float32Array; pixelCols?: number; imageGridThw?: number[][]; outputHiddenStates: boolean },
  ): Promise<ParityForward>;
  /** Vision-tower intermediates (patch_embed, rot_pos_emb, block<i>, merger) as [N, D] tensors. */
  visionIntermediates?(model: any, pixelValues: Float32Array, imageGridThw: number[][], pixelCols?: number): Promise<Record<string, tf.Tensor2D>>;
  /** 3-D position ids [3][B][S] and rope deltas [B] for the inputs. */
  ropeIndex?(model: any, inputIds: number[][], imageGridThw: number[][] | null, attentionMask: number[][]): { positionIds: number[][][]; ropeDeltas: number[] };
  /** Greedy decoding (KV cache) of `maxNewTokens` tokens; returns the new ids and, if available, their log-probs. */
  greedy?(model: any, prompt: ParityPrompt, opts: { maxNewTokens: number; eosTokenIds: number[]; padTokenId: number }): Promise<{ ids: number[]; logprobs?: number[] }>;
  /** Teacher-forced per-token log-probs of `completionIds` after the prompt. */
  completionLogprobs?(model: any, prompt: ParityPrompt, completionIds: number[]): Promise<number[]>;
  /** Attaches the PEFT adapter in `dir` to the model. */
  loadAdapter?(model: any, dir: string): Promise<void> | void;
  /** Removes every attached adapter. */
  unloadAdapter?(model: any): void;
  /** Frees the model. */
  disposeModel?(model: any): void;
}

/** Options of {@link runParity}. */
export interface ParityOptions {
  /** tokenizer.json to use instead of the fixture's. */
  tokenizerPath?: string;
  /** Only these cases (default: every case of the fixture plus "processor"). */
  cases?: string[];
  /** Model capabilities (default: discovered from @rarl/model's exports). */
  api?: ParityApi;
  /** Progress messages. */
  log?: (msg: string) => void;
}

const PROCESSOR_CASE = "processor";
/** Reference fields that are inputs of a model case, not outputs to compare. */
const INPUT_FIELDS = new Set(["input_ids", "attention_mask", "pixel_values", "image_grid_thw", "completion_ids"]);

function fieldPass(f: FieldResult): boolean {
  return f.max_abs_diff !== null && f.max_abs_diff <= f.tol;
}

function finish(fields: Record<string, FieldResult>, missing: string | null): CaseResult {
  if (missing) return { status: "NOT RUN", fields, reason: missing };
  const bad = Object.entries(fields).filter(([, f]) => !fieldPass(f));
  return bad.length === 0 ? { status: "PASS", fields } : { status: "FAIL", fields, reason: `out of tolerance: ${bad.map(([k]) => k).join(", ")}` };
}

function exactDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return maxAbsDiff(a, b);
}

/** Finds the images of a prompt (ordered slots): prompts[case].images if given, else by grid and best pixel match. */
async function assignImages(
  processor: Qwen2VLProcessor,
  fx: ParityFixture,
  grids: number[][],
  refPixels: RefTensor | null,
  cache: Map<string, { pv: Float32Array; grid: number[] }>,
  explicit?: string[],
): Promise<string[]> {
  const files = fx.imageFiles();
  const processed = async (file: string) => {
    let p = cache.get(file);
    if (!p) {
      const out = await processor.imageProcessor.preprocess([file]);
      p = { pv: out.pixelValues, grid: out.imageGridThw[0] };
      cache.set(file, p);
    }
    return p;
  };
  if (explicit) return explicit.map((n) => files.get(n) ?? path.join(fx.dir, n));
  const chosen: string[] = [];
  let row = 0;
  const D = refPixels ? refPixels.shape[1] : 0;
  for (const g of grids) {
    let best: string | null = null;
    let bestDiff = Number.POSITIVE_INFINITY;
    const n = g[0] * g[1] * g[2];
    for (const file of files.values()) {
      const p = await processed(file);
      if (p.grid.join() !== g.join()) continue;
      const d = refPixels ? maxAbsDiff(p.pv, (refPixels.data as Float32Array).subarray(row * D, (row + n) * D)) : 0;
      if (best === null || d < bestDiff) {
        best = file;
        bestDiff = d;
      }
    }
    if (best === null) throw new Error(`no image file in ${fx.dir} processes to grid ${JSON.stringify(g)}`);
    chosen.push(best);
    row += n;
  }
  return chosen;
}

async function runProcessorCase(fx: ParityFixture, processor: Qwen2VLProcessor): Promise<CaseResult> {
  const fields: Record<string, FieldResult> = {};
  const cache = new Map<string, { pv: Float32Array; grid: number[] }>();
  const prompts = fx.outputsJson.prompts ?? {};
  for (const [name, p] of Object.entries<any>(prompts)) {
    try {
      // prompts given as chat messages are rendered with the checkpoint's template; otherwise the rendered text is the input
      const rendered: string[] = Array.isArray(p.messages)
        ? p.messages.map((m: any) => processor.applyChatTemplate(m, { addGenerationPrompt: true }))
        : Array.isArray(p.rendered)
          ? p.rendered
          : [];
      if (rendered.length === 0) throw new Error(`prompt ${name} has neither messages nor rendered text`);
      if (Array.isArray(p.messages) && Array.isArray(p.rendered)) {
        fields[`${name}.rendered`] = { max_abs_diff: rendered.filter((t, i) => t !== p.rendered[i]).length + Math.abs(rendered.length - p.rendered.length), tol: 0, note: "strings that differ" };
      }
      const grids: number[][] = p.image_grid_thw ?? [];
      const refPv = fx.has(`${name}.pixel_values`) ? fx.read(`${name}.pixel_values`) : null;
      const images = await assignImages(processor, fx, grids, refPv, cache, p.images);
      const out = await processor.process({ text: rendered, images });
      if (Array.isArray(p.expanded)) {
        fields[`${name}.expanded`] = { max_abs_diff: out.expandedText.filter((t, i) => t !== p.expanded[i]).length, tol: 0, note: "strings that differ" };
      }
      const refIds: number[][] = fx.has(`${name}.input_ids`) ? toRows(fx.read(`${name}.input_ids`).data, fx.read(`${name}.input_ids`).shape[1]) : p.input_ids;
      const sameShape = (a: number[][], b: number[][]) => a.length === b.length && a.every((r, i) => r.length === b[i].length);
      fields[`${name}.input_ids`] = { max_abs_diff: sameShape(out.inputIds, refIds) ? exactDiff(out.inputIds.flat(), refIds.flat()) : Number.POSITIVE_INFINITY, tol: 0 };
      const refMask: number[][] | undefined = fx.has(`${name}.attention_mask`) ? toRows(fx.read(`${name}.attention_mask`).data, fx.read(`${name}.attention_mask`).shape[1]) : p.attention_mask;
      if (refMask) fields[`${name}.attention_mask`] = { max_abs_diff: sameShape(out.attentionMask, refMask) ? exactDiff(out.attentionMask.flat(), refMask.flat()) : Number.POSITIVE_INFINITY, tol: 0 };
      if (grids.length > 0) fields[`${name}.image_grid_thw`] = { max_abs_diff: exactDiff(out.imageGridThw.flat(), grids.flat()), tol: 0 };
      if (refPv) fields[`${name}.pixel_values`] = { max_abs_diff: maxAbsDiff(out.pixelValues, refPv.data as Float32Array), tol: toleranceFor("pixel_values", false) };
    } catch (e) {
      fields[`${name}.input_ids`] = { max_abs_diff: null, tol: 0, note: `error: ${(e as Error).message}` };
    }
  }
  // per-image references
  const ref = fx.imageRef;
  if (ref) {
    const names = [...new Set(ref.keys().map((k) => k.slice(0, k.lastIndexOf("."))))];
    const files = fx.imageFiles();
    for (const name of names) {
      const file = files.get(name);
      if (!file || !fs.existsSync(file)) {
        fields[`${name}.pixel_values`] = { max_abs_diff: null, tol: toleranceFor("pixel_values", false), note: `no image file for ${name}` };
        continue;
      }
      try {
        const out = await processor.imageProcessor.preprocess([file]);
        if (ref.has(`${name}.pixel_values`)) {
          const want = fx.read(`${name}.pixel_values`, ref);
          fields[`${name}.pixel_values`] = { max_abs_diff: maxAbsDiff(out.pixelValues, want.data as Float32Array), tol: toleranceFor("pixel_values", false) };
        }
        if (ref.has(`${name}.image_grid_thw`)) fields[`${name}.image_grid_thw`] = { max_abs_diff: exactDiff(out.imageGridThw.flat(), fx.read(`${name}.image_grid_thw`, ref).data), tol: 0 };
        if (ref.has(`${name}.resized_rgb_uint8`)) {
          const { decodeImage } = await import("../qwen2_vl/image");
          const rgb = processor.imageProcessor.processRgb(await decodeImage(file)).resized;
          fields[`${name}.resized_rgb_uint8`] = { max_abs_diff: exactDiff(rgb.data, fx.read(`${name}.resized_rgb_uint8`, ref).data), tol: 0 };
        }
      } catch (e) {
        fields[`${name}.pixel_values`] = { max_abs_diff: null, tol: toleranceFor("pixel_values", false), note: `error: ${(e as Error).message}` };
      }
    }
  }
  return finish(fields, null);
}

/** Inputs of a model case, derived from its reference tensors. */
interface CaseInputs {
  ids: number[][];
  mask: number[][];
  pixelValues?: Float32Array;
  grids?: number[][];
  /** For greedy: prompt length and number of generated tokens. */
  promptLen?: number;
  nGen?: number;
  /** For completion cases: the completion ids (row 0). */
  completion?: number[];
  /** Columns of pixelValues (C·T·P·P, 1176 for Qwen2-VL). */
  pixelCols?: number;
}

function rows(fx: ParityFixture, key: string): number[][] {
  const t = fx.read(key);
  return toRows(t.data, t.shape[t.shape.length - 1]);
}

function caseInputs(fx: ParityFixture, name: string): CaseInputs {
  let ids: number[][];
  let promptLen: number | undefined;
  let nGen: number | undefined;
  if (fx.has(`${name}.input_ids`)) ids = rows(fx, `${name}.input_ids`);
  else if (fx.has(`${name}.sequences`) && fx.has(`${name}.generated_ids`)) {
    ids = rows(fx, `${name}.sequences`);
    nGen = fx.read(`${name}.generated_ids`).shape[1];
    promptLen = ids[0].length - nGen;
  } else throw new Error(`case ${name} has neither input_ids nor sequences+generated_ids`);
  const mask = fx.has(`${name}.attention_mask`) ? rows(fx, `${name}.attention_mask`) : ids.map((r) => r.map(() => 1));
  const img = fx.imageTokenId;
  const nImgTokens = ids.flat().filter((t) => t === img).length;
  const out: CaseInputs = { ids, mask, promptLen, nGen };
  if (fx.has(`${name}.completion_ids`)) out.completion = rows(fx, `${name}.completion_ids`)[0];
  if (nImgTokens > 0) {
    const donor = findPixelDonor(fx, name, ids, nImgTokens);
    if (!donor) throw new Error(`case ${name} has ${nImgTokens} image tokens but no case holds matching pixel_values`);
    const pv = fx.read(`${donor}.pixel_values`);
    out.pixelValues = pv.data as Float32Array;
    out.pixelCols = pv.shape[1];
    out.grids = fx.has(`${donor}.image_grid_thw`) ? rows(fx, `${donor}.image_grid_thw`) : fx.outputsJson.prompts?.[donor]?.image_grid_thw;
  }
  return out;
}

/** The case whose pixel_values feed `name`: itself, else one with the same image-token count whose ids are a prefix of ours. */
function findPixelDonor(fx: ParityFixture, name: string, ids: number[][], nImgTokens: number): string | null {
  if (fx.has(`${name}.pixel_values`)) return name;
  const img = fx.imageTokenId;
  let fallback: string | null = null;
  for (const c of fx.tensorCases()) {
    if (!fx.has(`${c}.pixel_values`) || !fx.has(`${c}.input_ids`)) continue;
    const cids = rows(fx, `${c}.input_ids`);
    if (cids.flat().filter((t) => t === img).length !== nImgTokens) continue;
    fallback ??= c;
    if (cids.length === ids.length && cids.every((r, i) => r.every((t, j) => ids[i][j] === t))) return c;
  }
  return fallback;
}

async function readTensor(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

/** Reads a temporary tensor and frees it. */
async function take(t: tf.Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

/** Compares the forward-pass fields of a case. `offset` shifts positions (greedy steps start at P-1). */
async function compareForward(
  fx: ParityFixture,
  name: string,
  fields: Record<string, FieldResult>,
  fwd: ParityForward,
  inp: CaseInputs,
  step: { start: number; count: number } | null,
): Promise<void> {
  const [B, S, V] = fwd.logits.shape;
  const cols = fx.has("logit_cols") ? (fx.read("logit_cols").data as number[]) : null;
  const pre = step ? "step_" : "";
  const start = step ? step.start : 0;
  const len = step ? step.count : S;
  const mask = inp.mask.map((r) => r.slice(start, start + len));
  const sel = tf.tidy(() => tf.slice(fwd.logits, [0, start, 0], [B, len, V]));
  try {
    const want = (f: string) => fx.has(`${name}.${pre}${f}`);
    if (want("logits_cols") && cols) {
      const ref = fx.read(`${name}.${pre}logits_cols`);
      const got = await take(tf.tidy(() => tf.gather(sel, tf.tensor1d(cols, "int32"), 2)));
      fields[`${pre}logits_cols`] = { max_abs_diff: maxAbsDiff(got, ref.data as Float32Array, maskedKeep(mask, cols.length)), tol: toleranceFor("logits", false) };
    }
    if (!step && want("logits_last")) {
      const ref = fx.read(`${name}.logits_last`);
      const got = await take(tf.tidy(() => tf.slice(fwd.logits, [0, S - 1, 0], [B, 1, V])));
      fields.logits_last = { max_abs_diff: maxAbsDiff(got, ref.data as Float32Array), tol: toleranceFor("logits", false) };
    }
    if (want("logsumexp")) {
      const ref = fx.read(`${name}.${pre}logsumexp`);
      const got = await take(tf.tidy(() => tf.logSumExp(sel, 2)));
      fields[`${pre}logsumexp`] = { max_abs_diff: maxAbsDiff(got, ref.data as Float32Array, maskedKeep(mask, 1)), tol: toleranceFor("logsumexp", false) };
    }
    if (want("top_vals") || want("top_ids") || want("margin_top1_top2")) {
      const k = want("top_vals") ? fx.read(`${name}.${pre}top_vals`).shape[2] : 2;
      const { values, indices } = tf.topk(sel, Math.max(k, 2));
      const vals = await readTensor(values);
      const idx = Array.from(await indices.data());
      values.dispose();
      indices.dispose();
      const K = Math.max(k, 2);
      if (want("top_vals")) {
        const ref = fx.read(`${name}.${pre}top_vals`);
        const mine = K === k ? vals : vals.filter((_, i) => i % K < k);
        fields[`${pre}top_vals`] = { max_abs_diff: maxAbsDiff(mine, ref.data as Float32Array, maskedKeep(mask, k)), tol: toleranceFor("logits", false) };
        if (want("top_ids")) {
          const refIds = fx.read(`${name}.${pre}top_ids`).data;
          const mineIds = K === k ? idx : idx.filter((_, i) => i % K < k);
          const keepRow = (r: number) => mask[Math.floor(r / len)][r % len] === 1;
          fields[`${pre}top_ids`] = {
            max_abs_diff: topIdMismatches(refIds, ref.data, mineIds, k, 2 * toleranceFor("logits", false), keepRow),
            tol: 0,
            note: "ids that differ, over ranks whose reference values are more than 2e-4 from their neighbours",
          };
        }
      }
      if (want("margin_top1_top2")) {
        const ref = fx.read(`${name}.${pre}margin_top1_top2`);
        const margins = new Float32Array(B * len);
        for (let i = 0; i < B * len; i++) margins[i] = vals[i * K] - vals[i * K + 1];
        fields[`${pre}margin_top1_top2`] = { max_abs_diff: maxAbsDiff(margins, ref.data as Float32Array, maskedKeep(mask, 1)), tol: 2 * toleranceFor("logits", false) };
      }
    }
    if (!step && want("hidden_states")) {
      const ref = fx.read(`${name}.hidden_states`);
      if (!fwd.hiddenStates) fields.hidden_states = { max_abs_diff: null, tol: toleranceFor("hidden_states", false), note: "forward returned no hidden states" };
      else {
        const H = ref.shape[3];
        const got = new Float32Array(fwd.hiddenStates.length * B * S * H);
        for (let l = 0; l < fwd.hiddenStates.length; l++) got.set(await readTensor(fwd.hiddenStates[l]), l * B * S * H);
        fields.hidden_states = { max_abs_diff: maxAbsDiff(got, ref.data as Float32Array, maskedKeep(inp.mask, H)), tol: toleranceFor("hidden_states", false) };
      }
    }
    if (!step && want("rope_deltas")) {
      const ref = fx.read(`${name}.rope_deltas`);
      fields.rope_deltas = fwd.ropeDeltas
        ? { max_abs_diff: maxAbsDiff(fwd.ropeDeltas, ref.data), tol: 0 }
        : { max_abs_diff: null, tol: 0, note: "forward returned no rope deltas" };
    }
  } finally {
    sel.dispose();
  }
}

/**
 * Runs every reference case of a fixture folder (layout of test-fixtures/qwen2vl-tiny) and compares with
 * the tolerances of {@link TOLERANCES}. A case whose capability is missing is NOT RUN, which makes `overall` FAIL.
 */
export async function runParity(fixtureDir: string, opts: ParityOptions = {}): Promise<ParityReport> {
  const log = opts.log ?? (() => {});
  const fx = new ParityFixture(fixtureDir);
  const api = opts.api ?? (await discoverParityApi());
  const all = [PROCESSOR_CASE, ...fx.tensorCases()];
  const wanted = opts.cases ?? all;
  const unknown = wanted.filter((c) => !all.includes(c));
  const cases: Record<string, CaseResult> = {};
  for (const c of unknown) cases[c] = { status: "NOT RUN", fields: {}, reason: `no such case in ${fixtureDir}` };

  if (wanted.includes(PROCESSOR_CASE)) {
    log("case processor");
    try {
      const processor = Qwen2VLProcessor.fromPretrained(fixtureDir, { tokenizerPath: opts.tokenizerPath });
      cases[PROCESSOR_CASE] = await runProcessorCase(fx, processor);
    } catch (e) {
      cases[PROCESSOR_CASE] = { status: "FAIL", fields: {}, reason: (e as Error).message };
    }
  }

  const modelCases = wanted.filter((c) => c !== PROCESSOR_CASE && all.includes(c));
  // base cases first, adapter cases after (the adapter is attached once)
  const isLora = (c: string) => c.startsWith("lora_");
  const ordered = [...modelCases.filter((c) => !isLora(c)), ...modelCases.filter(isLora)];
  let model: any = null;
  let loadError: string | null = null;
  if (ordered.length > 0) {
    if (!api.loadModel || !api.forward) loadError = "the model forward pass is not available in this build";
    else {
      try {
        log("loading model");
        model = (await api.loadModel(fixtureDir, { tokenizerPath: opts.tokenizerPath })).model;
      } catch (e) {
        loadError = `loading the model failed: ${(e as Error).message}`;
      }
    }
  }
  let adapterState: "none" | "attached" | string = "none";
  try {
    for (const name of ordered) {
      log(`case ${name}`);
      const fields: Record<string, FieldResult> = {};
      const refFields = fx.fields(name);
      const markAll = (note: string) => {
        for (const f of refFields) if (!fields[f] && !INPUT_FIELDS.has(f)) fields[f] = { max_abs_diff: null, tol: toleranceFor(f, fx.read(`${name}.${f}`).isInteger), note };
      };
      if (loadError || !model) {
        markAll("not run");
        cases[name] = { status: loadError?.startsWith("loading") ? "FAIL" : "NOT RUN", fields, reason: loadError ?? "no model" };
        continue;
      }
      if (isLora(name) && adapterState === "none") {
        const dir = path.join(fixtureDir, "lora");
        if (!api.loadAdapter) adapterState = "LoRA adapters are not available in this build";
        else if (!fs.existsSync(dir)) adapterState = `no adapter folder ${dir}`;
        else {
          try {
            await api.loadAdapter(model, dir);
            adapterState = "attached";
          } catch (e) {
            adapterState = `loading the adapter failed: ${(e as Error).message}`;
          }
        }
      }
      if (isLora(name) && adapterState !== "attached") {
        markAll("not run");
        cases[name] = { status: adapterState.startsWith("loading") ? "FAIL" : "NOT RUN", fields, reason: adapterState };
        continue;
      }
      try {
        cases[name] = await runModelCase(fx, name, api, model, fields);
      } catch (e) {
        markAll("error");
        cases[name] = { status: "FAIL", fields, reason: (e as Error).message };
      }
    }
  } finally {
    if (model) {
      if (adapterState === "attached") api.unloadAdapter?.(model);
      api.disposeModel?.(model);
    }
  }
  const ordering = [PROCESSOR_CASE, ...fx.tensorCases(), ...unknown].filter((c) => cases[c]);
  const sorted: Record<string, CaseResult> = {};
  for (const c of ordering) sorted[c] = cases[c];
  const overall = Object.values(sorted).length > 0 && Object.values(sorted).every((c) => c.status === "PASS") ? "PASS" : "FAIL";
  return { overall, cases: sorted };
}

async function runModelCase(fx: ParityFixture, name: string, api: ParityApi, model: any, fields: Record<string, FieldResult>): Promise<CaseResult> {
  const inp = caseInputs(fx, name);
  const refFields = fx.fields(name);
  const missing: string[] = [];
  const wantHidden = refFields.includes("hidden_states");
  const fwd = await api.forward!(model, { inputIds: inp.ids, attentionMask: inp.mask, pixelValues: inp.pixelValues, pixelCols: inp.pixelCols, imageGridThw: inp.grids, outputHiddenStates: wantHidden });
  try {
    if (inp.nGen !== undefined && inp.promptLen !== undefined) {
      // greedy: per-step logits are the teacher-forced logits of the generated sequence at positions P-1 .. P+n-2
      await compareForward(fx, name, fields, fwd, inp, { start: inp.promptLen - 1, count: inp.nGen });
    } else {
      await compareForward(fx, name, fields, fwd, inp, null);
    }
  } finally {
    fwd.logits.dispose();
    for (const h of fwd.hiddenStates ?? []) h.dispose();
  }
  if (refFields.includes("position_ids")) {
    if (!api.ropeIndex) {
      fields.position_ids = { max_abs_diff: null, tol: 0, note: "get_rope_index not available" };
      missing.push("position ids");
    } else {
      const r = api.ropeIndex(model, inp.ids, inp.grids ?? null, inp.mask);
      fields.position_ids = { max_abs_diff: maxAbsDiff(r.positionIds.flat(2), fx.read(`${name}.position_ids`).data), tol: 0 };
    }
  }
  const visionFields = refFields.filter((f) => f.startsWith("vision."));
  if (visionFields.length > 0) {
    if (!api.visionIntermediates || !inp.pixelValues || !inp.grids) {
      for (const f of visionFields) fields[f] = { max_abs_diff: null, tol: toleranceFor(f, false), note: "vision intermediates not available" };
      missing.push("vision intermediates");
    } else {
      const inter = await api.visionIntermediates(model, inp.pixelValues, inp.grids, inp.pixelCols);
      try {
        for (const f of visionFields) {
          const key = f.slice("vision.".length);
          const t = inter[key];
          const tol = key === "rot_pos_emb" ? toleranceFor("logits", false) : toleranceFor(f, false);
          fields[f] = t ? { max_abs_diff: maxAbsDiff(await readTensor(t), fx.read(`${name}.${f}`).data as Float32Array), tol } : { max_abs_diff: null, tol, note: `no intermediate "${key}"` };
        }
      } finally {
        for (const t of Object.values(inter)) t.dispose();
      }
    }
  }
  const merge = fx.config?.vision_config?.spatial_merge_size ?? 2;
  /** Row b as one prompt: its unpadded tokens minus the last `dropTail`, with that row's images. */
  const rowPrompt = (b: number, dropTail: number): ParityPrompt => {
    let gi = 0;
    let pixRow = 0;
    for (let r = 0; r < b; r++) {
      let tokens = inp.ids[r].filter((t, j) => t === fx.imageTokenId && inp.mask[r][j] === 1).length;
      while (tokens > 0 && inp.grids && gi < inp.grids.length) {
        const g = inp.grids[gi++];
        tokens -= (g[0] * g[1] * g[2]) / (merge * merge);
        pixRow += g[0] * g[1] * g[2];
      }
    }
    const ids = inp.ids[b].filter((_, j) => inp.mask[b][j] === 1);
    const kept = ids.slice(0, ids.length - dropTail);
    let tokens = kept.filter((t) => t === fx.imageTokenId).length;
    const grids: number[][] = [];
    let rowsOf = 0;
    while (tokens > 0 && inp.grids && gi < inp.grids.length) {
      const g = inp.grids[gi++];
      grids.push(g);
      tokens -= (g[0] * g[1] * g[2]) / (merge * merge);
      rowsOf += g[0] * g[1] * g[2];
    }
    const D = inp.pixelCols ?? 0;
    return grids.length === 0 || !inp.pixelValues
      ? { inputIds: kept }
      : { inputIds: kept, pixelValues: inp.pixelValues.slice(pixRow * D, (pixRow + rowsOf) * D), imageGridThw: grids };
  };
  const B = inp.ids.length;
  if (inp.completion && refFields.includes("completion_logprobs")) {
    const tol = toleranceFor("completion_logprobs", false);
    if (!api.completionLogprobs) {
      fields.completion_logprobs = { max_abs_diff: null, tol, note: "completion log-probs not available" };
      missing.push("completion log-probs");
    } else {
      const ref = fx.read(`${name}.completion_logprobs`);
      const comp = rows(fx, `${name}.completion_ids`);
      const C = comp[0].length;
      let worst = 0;
      for (let b = 0; b < B; b++) {
        const lp = await api.completionLogprobs(model, rowPrompt(b, C), comp[b]);
        worst = Math.max(worst, maxAbsDiff(lp, (ref.data as Float32Array).subarray(b * C, (b + 1) * C)));
      }
      fields.completion_logprobs = { max_abs_diff: worst, tol };
    }
  }
  if (inp.nGen !== undefined && inp.promptLen !== undefined) {
    const gk = fx.outputsJson.generation_kwargs ?? {};
    const eos: number[] = Array.isArray(gk.eos_token_id) ? gk.eos_token_id : [gk.eos_token_id ?? fx.config.eos_token_id ?? 151645];
    const pad: number = gk.pad_token_id ?? 151643;
    if (!api.greedy) {
      fields.generated_ids = { max_abs_diff: null, tol: 0, note: "generation not available" };
      fields.sequences = { max_abs_diff: null, tol: 0, note: "generation not available" };
      missing.push("generation");
    } else {
      const n = inp.nGen;
      const refGen = fx.read(`${name}.generated_ids`).data as number[];
      const cols = fx.has("logit_cols") ? (fx.read("logit_cols").data as number[]) : null;
      const lc = fx.has(`${name}.step_logits_cols`) ? (fx.read(`${name}.step_logits_cols`).data as Float32Array) : null;
      const lse = fx.has(`${name}.step_logsumexp`) ? (fx.read(`${name}.step_logsumexp`).data as Float32Array) : null;
      let genDiff = 0;
      let seqDiff = 0;
      let lpDiff: number | null = null;
      for (let b = 0; b < B; b++) {
        const g = await api.greedy(model, rowPrompt(b, n), { maxNewTokens: gk.max_new_tokens ?? n, eosTokenIds: eos, padTokenId: pad });
        const want = refGen.slice(b * n, (b + 1) * n);
        // HF pads a row that hit EOS early with the pad id
        const mine = g.ids.length <= n ? [...g.ids, ...new Array<number>(n - g.ids.length).fill(pad)] : g.ids;
        genDiff = Math.max(genDiff, mine.length === n ? maxAbsDiff(mine, want) : Number.POSITIVE_INFINITY);
        const seq = [...inp.ids[b].slice(0, inp.promptLen), ...mine];
        seqDiff = Math.max(seqDiff, seq.length === inp.ids[b].length ? maxAbsDiff(seq, inp.ids[b]) : Number.POSITIVE_INFINITY);
        if (g.logprobs && cols && lc && lse) {
          const C = cols.length;
          const k = Math.min(g.ids.length, n);
          const refLp = want.slice(0, k).map((id, i) => lc[(b * n + i) * C + cols.indexOf(id)] - lse[b * n + i]);
          lpDiff = Math.max(lpDiff ?? 0, maxAbsDiff(g.logprobs.slice(0, k), refLp));
        }
      }
      fields.generated_ids = { max_abs_diff: genDiff, tol: 0 };
      fields.sequences = { max_abs_diff: seqDiff, tol: 0 };
      if (lpDiff !== null) fields.generated_logprobs = { max_abs_diff: lpDiff, tol: toleranceFor("logprobs", false), note: "log-probs returned by generate vs reference step logits" };
    }
  }
  // reference fields that are inputs of the case (not outputs to compare)
  for (const f of refFields) {
    if (INPUT_FIELDS.has(f) || fields[f]) continue;
    fields[f] = { max_abs_diff: null, tol: toleranceFor(f, fx.read(`${name}.${f}`).isInteger), note: "field not understood by this parity tool" };
  }
  return finish(fields, missing.length > 0 ? `not available yet: ${missing.join(", ")}` : null);
}

/**
 * Fills a {@link ParityApi} from @rarl/model's exports (loadQwen2VL, getRopeIndex, the generation and
 * log-prob functions, loadAdapter). Anything not exported (yet) stays undefined, so its cases are NOT RUN.
 */
export async function discoverParityApi(): Promise<ParityApi> {
  const m: Record<string, any> = await import("../index");
  const api: ParityApi = {};
  if (typeof m.loadQwen2VL === "function") {
    api.loadModel = async (dir, o) => {
      const r = await m.loadQwen2VL(dir, { tokenizerPath: o.tokenizerPath });
      return { model: r.model ?? r, config: r.config };
    };
    api.disposeModel = (model) => {
      // generation keeps a transposed lm_head copy per model; free it with the model
      if (typeof m.releaseTransposedLmHead === "function") m.releaseTransposedLmHead(model);
      model?.dispose?.();
    };
    api.forward = async (model, a) => {
      const inputIds = tf.tensor2d(a.inputIds, [a.inputIds.length, a.inputIds[0].length], "int32");
      const attentionMask = tf.tensor2d(a.attentionMask, [a.attentionMask.length, a.attentionMask[0].length], "int32");
      const pixelValues = a.pixelValues && a.pixelValues.length > 0 ? tf.tensor2d(a.pixelValues, [a.pixelValues.length / (a.pixelCols ?? 1176), a.pixelCols ?? 1176]) : undefined;
      try {
        const out = await model.forward({ inputIds, attentionMask, pixelValues, imageGridThw: a.imageGridThw, outputHiddenStates: a.outputHiddenStates });
        const ropeDeltas = out.ropeDeltas === undefined ? undefined : Array.isArray(out.ropeDeltas) ? out.ropeDeltas.flat() : Array.from(await out.ropeDeltas.data());
        return { logits: out.logits, hiddenStates: out.hiddenStates, ropeDeltas };
      } finally {
        inputIds.dispose();
        attentionMask.dispose();
        pixelValues?.dispose();
      }
    };
  }
  if (typeof m.getRopeIndex === "function") {
    api.ropeIndex = (model, ids, grids, mask) => m.getRopeIndex(ids, grids, mask, model.config);
  }
  api.visionIntermediates = async (model, pv, grids, cols = 1176) => {
    const visual = model.visual ?? model.vision;
    if (!visual?.forward) throw new Error("the model exposes no vision tower (model.visual)");
    const x = tf.tensor2d(pv, [pv.length / cols, cols]);
    try {
      const out = visual.forward(x, grids, { intermediates: true });
      out.embeds?.dispose?.();
      return out.intermediates ?? {};
    } finally {
      x.dispose();
    }
  };
  if (typeof m.generate === "function") {
    api.greedy = async (model, prompt, o) => {
      const r = await m.generate(model, null, {
        prompts: [prompt],
        doSample: false,
        maxNewTokens: o.maxNewTokens,
        eosTokenIds: o.eosTokenIds,
        padTokenId: o.padTokenId,
      });
      const s = r.samples[0][0];
      return { ids: s.ids, logprobs: s.logprobs };
    };
  }
  if (typeof m.readCompletionLogprobs === "function") {
    api.completionLogprobs = async (model, prompt, completionIds) => (await m.readCompletionLogprobs(model, { prompts: [prompt], completions: [completionIds] }))[0];
  } else if (typeof m.completionLogprobsHost === "function") {
    api.completionLogprobs = async (model, prompt, completionIds) => m.completionLogprobsHost(model, { prompts: [prompt], completions: [completionIds] })[0];
  }
  if (typeof m.loadAdapter === "function") {
    api.loadAdapter = (model, dir) => m.loadAdapter(model, dir);
    if (typeof m.removeLora === "function") api.unloadAdapter = (model) => m.removeLora(model);
  }
  return api;
}
