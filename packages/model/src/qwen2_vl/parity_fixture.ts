/**
 * Test support: reads the qwen2vl-tiny fixture's reference tensors and compares a forward pass with them.
 * (Used by the model's vitest parity tests; not part of the public API.)
 */
import path from "node:path";
import { fixturesDir, openSafetensors, type TensorSource } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { maxAbsDiff } from "../parity/compare";
import type { Qwen2VLForConditionalGeneration } from "./model";

/** `<repo>/test-fixtures/qwen2vl-tiny`. */
export function tinyFixtureDir(): string {
  return path.join(fixturesDir(), "qwen2vl-tiny");
}

export function openReference(dir = tinyFixtureDir()): TensorSource {
  return openSafetensors(path.join(dir, "reference", "outputs.safetensors"));
}

/** Reads a reference tensor as numbers (I64 -> number). */
export function refArray(ref: TensorSource, name: string): { shape: number[]; data: Float32Array | number[] } {
  const t = ref.read(name);
  if (t.data instanceof BigInt64Array) return { shape: t.shape, data: Array.from(t.data, (x) => Number(x)) };
  return { shape: t.shape, data: t.data as Float32Array };
}

export function refRows(ref: TensorSource, name: string): number[][] {
  const { shape, data } = refArray(ref, name);
  const rows: number[][] = [];
  for (let i = 0; i < shape[0]; i++) rows.push(Array.from(data.slice(i * shape[1], (i + 1) * shape[1]) as ArrayLike<number>));
  return rows;
}

/** The fixture's `image_prompt` case as a tokenized generation prompt (ids, pixel values, grid). */
export function refImagePrompt(ref: TensorSource): { inputIds: number[]; pixelValues: Float32Array; imageGridThw: number[][] } {
  return {
    inputIds: refRows(ref, "image_prompt.input_ids")[0],
    pixelValues: refArray(ref, "image_prompt.pixel_values").data as Float32Array,
    imageGridThw: refRows(ref, "image_prompt.image_grid_thw"),
  };
}

/** Max |a - b| (the parity tool's definition: NaN or a length mismatch gives Infinity, a failure). */
export { maxAbsDiff };

/** Per-field max |Δ| (integers: count of mismatches) of one forward case against the reference. */
export interface CaseDiffs {
  [field: string]: number;
}

/**
 * Runs `case` of the fixture (image_prompt, text_only, batch, ...) through the model and returns max |Δ| per field:
 * position_ids / rope_deltas / top_ids (mismatch counts), hidden_states, logits_cols, logsumexp, top_vals,
 * logits_last, and vision.* for cases with images. Positions with attention_mask 0 are ignored.
 */
export function runCase(model: Qwen2VLForConditionalGeneration, ref: TensorSource, name: string): CaseDiffs {
  const ids = refRows(ref, `${name}.input_ids`);
  const mask = refRows(ref, `${name}.attention_mask`);
  const B = ids.length;
  const S = ids[0].length;
  const pixKey = name === "image_prompt" || name === "batch" ? name : ref.has(`${name}.pixel_values`) ? name : null;
  const hasImage = ids.some((r) => r.includes(model.config.imageTokenId));
  const imgCase = hasImage ? (pixKey ?? "image_prompt") : null;
  const diffs: CaseDiffs = {};
  const inputIds = tf.tensor2d(ids, [B, S], "int32");
  const attentionMask = tf.tensor2d(mask, [B, S], "int32");
  let pixelValues: tf.Tensor2D | undefined;
  let grid: number[][] | undefined;
  if (imgCase) {
    const pv = ref.read(`${imgCase}.pixel_values`);
    pixelValues = tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]);
    grid = refRows(ref, `${imgCase}.image_grid_thw`);
  }
  const out = model.forward({ inputIds, attentionMask, pixelValues, imageGridThw: grid, outputHiddenStates: true, outputVisionIntermediates: name === "image_prompt" });
  const valid = (b: number, s: number) => mask[b][s] === 1;
  try {
    // positions and deltas (exact)
    const pos = refArray(ref, `${name}.position_ids`).data as number[];
    let bad = 0;
    for (let r = 0; r < 3; r++) for (let b = 0; b < B; b++) for (let s = 0; s < S; s++) if (pos[(r * B + b) * S + s] !== out.positionIds[r][b][s]) bad++;
    diffs.position_ids = bad;
    const deltas = refArray(ref, `${name}.rope_deltas`).data as number[];
    diffs.rope_deltas = deltas.filter((d, b) => d !== out.ropeDeltas[b]).length;
    // hidden states
    const hs = ref.read(`${name}.hidden_states`);
    const H = hs.shape[3];
    let hm = 0;
    out.hiddenStates!.forEach((h, l) => {
      const mine = h.dataSync();
      const refL = (hs.data as Float32Array).subarray(l * B * S * H, (l + 1) * B * S * H);
      hm = Math.max(hm, maxAbsDiff(mine, refL, (i) => valid(Math.floor(i / (S * H)), Math.floor(i / H) % S)));
    });
    diffs.hidden_states = hm;
    // logits-derived
    const cols = refArray(ref, "logit_cols").data as number[];
    const V = out.logits.shape[2];
    const colT = tf.tensor1d(cols, "int32");
    const mineCols = tf.tidy(() => tf.gather(out.logits, colT, 2).dataSync());
    colT.dispose();
    const C = cols.length;
    diffs.logits_cols = maxAbsDiff(mineCols, refArray(ref, `${name}.logits_cols`).data as Float32Array, (i) => valid(Math.floor(i / (S * C)), Math.floor(i / C) % S));
    const lse = tf.tidy(() => tf.logSumExp(out.logits, -1).dataSync());
    diffs.logsumexp = maxAbsDiff(lse, refArray(ref, `${name}.logsumexp`).data as Float32Array, (i) => valid(Math.floor(i / S), i % S));
    const { values, indices } = tf.topk(out.logits, 10);
    const tv = values.dataSync();
    const ti = indices.dataSync();
    values.dispose();
    indices.dispose();
    const refTi = refArray(ref, `${name}.top_ids`).data as number[];
    let tbad = 0;
    for (let i = 0; i < ti.length; i++) if (valid(Math.floor(i / (S * 10)), Math.floor(i / 10) % S) && ti[i] !== refTi[i]) tbad++;
    diffs.top_ids = tbad;
    diffs.top_vals = maxAbsDiff(tv, refArray(ref, `${name}.top_vals`).data as Float32Array, (i) => valid(Math.floor(i / (S * 10)), Math.floor(i / 10) % S));
    if (ref.has(`${name}.logits_last`)) {
      const last = tf.tidy(() => tf.slice(out.logits, [0, S - 1, 0], [B, 1, V]).dataSync());
      diffs.logits_last = maxAbsDiff(last, refArray(ref, `${name}.logits_last`).data as Float32Array);
    }
    if (out.visionIntermediates) {
      for (const [k, t] of Object.entries(out.visionIntermediates)) {
        diffs[`vision.${k}`] = maxAbsDiff(t.dataSync(), refArray(ref, `${name}.vision.${k}`).data as Float32Array);
      }
    }
  } finally {
    inputIds.dispose();
    attentionMask.dispose();
    pixelValues?.dispose();
    out.logits.dispose();
    for (const h of out.hiddenStates ?? []) h.dispose();
    for (const t of Object.values(out.visionIntermediates ?? {})) t.dispose();
  }
  return diffs;
}
