import { initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "./loading";
import { KVCache, ModelInputError, Qwen2VLForConditionalGeneration, shareCache, tileCache } from "./model";
import { maxAbsDiff, openReference, refArray, refRows, runCase, tinyFixtureDir } from "./parity_fixture";

let model: Qwen2VLForConditionalGeneration;
const ref = openReference();

beforeAll(async () => {
  await initBackend();
  model = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
});
afterAll(() => model?.dispose());

function expectParity(d: Record<string, number>, withLast = true) {
  expect(d.position_ids).toBe(0);
  expect(d.rope_deltas).toBe(0);
  expect(d.top_ids).toBe(0);
  expect(d.hidden_states).toBeLessThan(1e-3);
  expect(d.logits_cols).toBeLessThan(1e-4);
  expect(d.logsumexp).toBeLessThan(1e-4);
  expect(d.top_vals).toBeLessThan(1e-4);
  if (withLast) expect(d.logits_last).toBeLessThan(1e-4);
}

/** The fixture's left-padded `batch` case prefilled with a cache (logits disposed); the caller disposes the rest. */
function prefillBatch() {
  const ids = refRows(ref, "batch.input_ids");
  const mask = refRows(ref, "batch.attention_mask");
  const pv = ref.read("batch.pixel_values");
  const grid = refRows(ref, "batch.image_grid_thw");
  const pixelValues = tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]);
  const inputIds = tf.tensor2d(ids, undefined, "int32");
  const attentionMask = tf.tensor2d(mask, undefined, "int32");
  const pre = model.forward({ inputIds, attentionMask, pixelValues, imageGridThw: grid, useCache: true, logitsToKeep: 1 });
  pre.logits.dispose();
  return { ids, mask, grid, pixelValues, inputIds, attentionMask, pre };
}

describe(`Qwen2-VL forward parity with transformers 4.47 (backend ${process.env.RARL_BACKEND})`, () => {
  it("image_prompt: vision intermediates, positions, rope_deltas, hidden states, logits", () => {
    const d = runCase(model, ref, "image_prompt");
    expectParity(d);
    for (const k of ["patch_embed", "rot_pos_emb", "block0", "block1", "merger"]) expect(d[`vision.${k}`], k).toBeLessThan(1e-4);
  });
  it("text_only", () => expectParity(runCase(model, ref, "text_only")));
  it("batch (two images, left padding; padded positions ignored)", () => expectParity(runCase(model, ref, "batch")));
  it("completion (prompt + completion, teacher forced)", () => expectParity(runCase(model, ref, "completion"), false));

  it("numTensors stays flat across repeated forwards (with and without cache)", () => {
    const ids = tf.tensor2d([refRows(ref, "text_only.input_ids")[0]], undefined, "int32");
    const run = () => {
      const o = model.forward({ inputIds: ids, useCache: true, outputHiddenStates: true });
      const next = tf.tensor2d([[42]], [1, 1], "int32");
      const o2 = model.forward({ inputIds: next, pastKeyValues: o.pastKeyValues });
      o.logits.dispose();
      for (const h of o.hiddenStates!) h.dispose();
      o2.logits.dispose();
      o2.pastKeyValues!.dispose();
      next.dispose();
    };
    run();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) run();
    expect(tf.memory().numTensors).toBe(before);
    ids.dispose();
  });
});

/** Greedy decode with the KV cache, as generate() does: prefill, then one token per step. */
describe("KV cache", () => {
  it("cached greedy decode reproduces greedy.generated_ids and the per-step logits", () => {
    const ids = refRows(ref, "image_prompt.input_ids");
    const pv = ref.read("image_prompt.pixel_values");
    const pixelValues = tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]);
    const grid = refRows(ref, "image_prompt.image_grid_thw");
    const cols = tf.tensor1d(refArray(ref, "logit_cols").data as number[], "int32");
    const C = cols.shape[0];
    const want = refArray(ref, "greedy.generated_ids").data as number[];
    const wantCols = refArray(ref, "greedy.step_logits_cols").data as Float32Array;
    const inputIds = tf.tensor2d(ids, undefined, "int32");
    let out = model.forward({ inputIds, pixelValues, imageGridThw: grid, useCache: true, logitsToKeep: 1 });
    inputIds.dispose();
    pixelValues.dispose();
    const cache = out.pastKeyValues!;
    expect(out.logits.shape).toEqual([1, 1, model.config.vocabSize]);
    const got: number[] = [];
    let worst = 0;
    for (let step = 0; step < want.length; step++) {
      const row = tf.tidy(() => tf.gather(tf.reshape(out.logits, [-1]), cols).dataSync());
      worst = Math.max(worst, maxAbsDiff(row, wantCols.subarray(step * C, (step + 1) * C)));
      const next = tf.tidy(() => tf.argMax(tf.reshape(out.logits, [-1])).dataSync()[0]);
      out.logits.dispose();
      got.push(next);
      if (step === want.length - 1) break;
      const t = tf.tensor2d([[next]], [1, 1], "int32");
      out = model.forward({ inputIds: t, pastKeyValues: cache });
      t.dispose();
      expect(out.pastKeyValues).toBe(cache);
    }
    expect(got).toEqual(want);
    expect(worst).toBeLessThan(1e-4);
    expect(cache.length).toBe(ids[0].length + want.length - 1);
    cache.dispose();
    cols.dispose();
  });

  it("tileCache: G copies of one prefill decode identically; left-padded batch decode matches an uncached forward", () => {
    const { ids, mask, grid, pixelValues, inputIds, attentionMask, pre } = prefillBatch();
    const tiled = tileCache(pre.pastKeyValues!, 2); // rows: 0,0,1,1
    expect(tiled.batchSize).toBe(4);
    expect(tiled.ropeDeltas).toEqual([pre.ropeDeltas[0], pre.ropeDeltas[0], pre.ropeDeltas[1], pre.ropeDeltas[1]]);
    const nextTok = [7, 7, 99, 99];
    const step = tf.tensor2d(nextTok.map((t) => [t]), [4, 1], "int32");
    const dec = model.forward({ inputIds: step, pastKeyValues: tiled });
    const dl = dec.logits.arraySync() as number[][][];
    expect(maxAbsDiff(dl[0][0], dl[1][0])).toBe(0);
    expect(maxAbsDiff(dl[2][0], dl[3][0])).toBe(0);
    // reference: the same sequences without a cache
    const full = tf.tensor2d(ids.map((r, b) => [...r, nextTok[2 * b]]), undefined, "int32");
    const fullMask = tf.tensor2d(mask.map((r) => [...r, 1]), undefined, "int32");
    const ref2 = model.forward({ inputIds: full, attentionMask: fullMask, pixelValues, imageGridThw: grid, logitsToKeep: 1 });
    const rl = ref2.logits.arraySync() as number[][][];
    expect(maxAbsDiff(dl[0][0], rl[0][0])).toBeLessThan(1e-4);
    expect(maxAbsDiff(dl[2][0], rl[1][0])).toBeLessThan(1e-4);
    // the original prefill cache was not modified by tiling/decoding
    expect(pre.pastKeyValues!.length).toBe(ids[0].length);
    for (const t of [pixelValues, inputIds, attentionMask, step, dec.logits, full, fullMask, ref2.logits]) t.dispose();
    tiled.dispose();
    pre.pastKeyValues!.dispose();
  });

  it("shareCache: prompt stored once, decode logits equal tileCache's over steps of 1 and 2 tokens and after dropping rows; no tensor left", () => {
    const before = tf.memory().numTensors;
    const { ids, pixelValues, inputIds, attentionMask, pre } = prefillBatch();
    const G = 3;
    const tiled = tileCache(pre.pastKeyValues!, G); // rows 0,0,0,1,1,1
    const shared = shareCache(pre.pastKeyValues!, G);
    const Tp = ids[0].length;
    const kvh = model.config.numKeyValueHeads;
    expect(shared.batchSize).toBe(6);
    expect(shared.length).toBe(Tp);
    expect(shared.layers).toEqual([]);
    expect(shared.prefix!.rowPrompt).toEqual([0, 0, 0, 1, 1, 1]);
    expect(shared.prefix!.layers[0].kT.length).toBe(2); // one copy per prompt, not per row
    expect(shared.prefix!.layers[0].kT[0].length).toBe(kvh);
    expect(shared.prefix!.layers[0].kT[0][0].shape).toEqual([model.config.headDim, Tp]);
    expect(shared.ropeDeltas).toEqual(tiled.ropeDeltas);
    expect(shared.promptRows()).toEqual([
      { prompt: 0, start: 0, count: 3 },
      { prompt: 1, start: 3, count: 3 },
    ]);
    const step = (cache: KVCache, toks: number[][]) => {
      const x = tf.tensor2d(toks, undefined, "int32");
      const o = model.forward({ inputIds: x, pastKeyValues: cache });
      const l = o.logits.arraySync() as number[][][];
      x.dispose();
      o.logits.dispose();
      return l;
    };
    const compare = (toks: number[][]) => {
      const a = step(tiled, toks);
      const b = step(shared, toks);
      for (let r = 0; r < toks.length; r++) for (let s = 0; s < toks[0].length; s++) expect(maxAbsDiff(a[r][s], b[r][s])).toBeLessThan(1e-4);
      // the rows of one prompt got different tokens, so they must differ (the check cannot pass by broadcasting row 0)
      expect(maxAbsDiff(b[0][0], b[1][0])).toBeGreaterThan(1e-3);
    };
    compare([[5], [6], [7], [8], [9], [10]]);
    compare([[11, 12], [13, 14], [15, 16], [17, 18], [19, 20], [21, 22]]); // 2 new tokens: causal among them
    expect(shared.layers[0].k.shape[2]).toBe(3); // only the positions after the prompt are per row
    expect(shared.length).toBe(Tp + 3);
    tiled.keepRows([1, 3, 5]);
    shared.keepRows([1, 3, 5]);
    expect(shared.prefix!.rowPrompt).toEqual([0, 1, 1]);
    compare([[30], [31], [32]]);
    shared.keepRows([1, 2]); // prompt 0 has no row left
    tiled.keepRows([1, 2]);
    expect(shared.promptRows()).toEqual([{ prompt: 1, start: 0, count: 2 }]);
    compare([[40], [41]]);
    expect(() => tileCache(shared, 2)).toThrow(ModelInputError);
    expect(() => shareCache(shared, 2)).toThrow(ModelInputError);
    const copy = shared.clone();
    expect(copy.prefix!.layers[1].v[1][0].dataSync()).toEqual(shared.prefix!.layers[1].v[1][0].dataSync());
    for (const c of [copy, shared, tiled, pre.pastKeyValues!]) c.dispose();
    tf.dispose([pixelValues, inputIds, attentionMask]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("several images in one prompt", () => {
  it("both images' features land in their <|image_pad|> slots, in order", () => {
    const pv = ref.read("batch.pixel_values"); // disc (12 tokens) then checker (10 tokens)
    const grid = refRows(ref, "batch.image_grid_thw");
    const c = model.config;
    const ids = [[100, c.visionStartTokenId, ...Array(12).fill(c.imageTokenId), c.visionEndTokenId, 200, c.visionStartTokenId, ...Array(10).fill(c.imageTokenId), c.visionEndTokenId, 300]];
    const inputIds = tf.tensor2d(ids, undefined, "int32");
    const pixelValues = tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]);
    const feats = model.getImageFeatures(pixelValues, grid);
    const out = model.forward({ inputIds, pixelValues, imageGridThw: grid, outputHiddenStates: true, logitsToKeep: 1 });
    const emb = out.hiddenStates![0].arraySync()[0];
    const f = feats.arraySync();
    const slots = ids[0].flatMap((t, i) => (t === c.imageTokenId ? [i] : []));
    expect(slots.length).toBe(22);
    let worst = 0;
    slots.forEach((s, k) => {
      worst = Math.max(worst, maxAbsDiff(emb[s], f[k]));
    });
    expect(worst).toBe(0);
    // the second image starts after the first image's max position + 1 + 2 text tokens
    expect(out.positionIds[0][0].slice(0, 4)).toEqual([0, 1, 2, 2]);
    expect(out.ropeDeltas[0]).toBeLessThan(0);
    tf.dispose([inputIds, pixelValues, feats, out.logits, ...out.hiddenStates!]);
  });
});

describe("KV cache masks", () => {
  it("a decode step accepts the new-token mask [B, S] or the full mask [B, cache + S] (generate style) with the same result", () => {
    const ids = refRows(ref, "text_only.input_ids");
    const inputIds = tf.tensor2d(ids, undefined, "int32");
    const pre = model.forward({ inputIds, useCache: true, logitsToKeep: 1 });
    pre.logits.dispose();
    const c2 = pre.pastKeyValues!.clone();
    const tok = tf.tensor2d([[42]], [1, 1], "int32");
    const short = tf.tensor2d([[1]], [1, 1], "int32");
    const full = tf.tensor2d([[...ids[0].map(() => 1), 1]], undefined, "int32");
    const a = model.forward({ inputIds: tok, pastKeyValues: pre.pastKeyValues, attentionMask: short });
    const b = model.forward({ inputIds: tok, pastKeyValues: c2, attentionMask: full });
    expect(maxAbsDiff(a.logits.dataSync(), b.logits.dataSync())).toBe(0);
    expect(a.pastKeyValues!.attentionMask).toEqual(b.pastKeyValues!.attentionMask);
    expect(a.positionIds[0][0]).toEqual([ids[0].length]); // text-only: rope delta 0
    const bad = tf.tensor2d([[1, 1]], [1, 2], "int32");
    expect(() => model.forward({ inputIds: tok, pastKeyValues: c2, attentionMask: bad })).toThrow(ModelInputError);
    tf.dispose([inputIds, tok, short, full, bad, a.logits, b.logits]);
    pre.pastKeyValues!.dispose();
    c2.dispose();
  });
});

describe("autodiff through the forward pass", () => {
  it("LoRA slots on a text and a vision Linear get gradients that match central differences (one-image split included)", () => {
    const ids = tf.tensor2d(refRows(ref, "image_prompt.input_ids"), undefined, "int32");
    const pv0 = ref.read("image_prompt.pixel_values");
    const pv = tf.tensor2d(pv0.data as Float32Array, pv0.shape as [number, number]);
    const grid = refRows(ref, "image_prompt.image_grid_thw");
    const lin = model.namedLinears().get("model.layers.0.self_attn.v_proj")!;
    const vlin = model.namedLinears().get("visual.blocks.0.mlp.fc2")!; // gradient flows back through block 1's attention
    const vars = [
      tf.variable(tf.randomNormal([4, lin.inFeatures], 0, 0.3, "float32", 1)),
      tf.variable(tf.randomNormal([lin.outFeatures, 4], 0, 0.3, "float32", 2)),
      tf.variable(tf.randomNormal([4, vlin.inFeatures], 0, 0.3, "float32", 3)),
      tf.variable(tf.randomNormal([vlin.outFeatures, 4], 0, 0.3, "float32", 4)),
    ];
    lin.lora = { A: vars[0], B: vars[1], scale: 2, dropout: 0 };
    vlin.lora = { A: vars[2], B: vars[3], scale: 2, dropout: 0 };
    const cols = tf.tensor1d([70388, 16812, 5, 100], "int32");
    const loss = () =>
      tf.tidy(() => {
        const o = model.forward({ inputIds: ids, pixelValues: pv, imageGridThw: grid, logitsToKeep: 1 });
        return tf.sum(tf.gather(tf.reshape(o.logits, [-1]), cols)) as tf.Scalar;
      });
    try {
      const { value, grads } = tf.variableGrads(loss, vars);
      value.dispose();
      for (const v of vars) {
        const g = grads[v.name].dataSync();
        let i = 0;
        for (let j = 0; j < g.length; j++) if (Math.abs(g[j]) > Math.abs(g[i])) i = j;
        expect(Math.abs(g[i])).toBeGreaterThan(1e-2);
        const orig = v.dataSync().slice();
        const eps = 2e-2;
        const at = (d: number) => {
          const p = orig.slice();
          p[i] += d;
          tf.tidy(() => v.assign(tf.tensor(p, v.shape)));
          const l = loss();
          const x = l.dataSync()[0];
          l.dispose();
          return x;
        };
        const fd = (at(eps) - at(-eps)) / (2 * eps);
        tf.tidy(() => v.assign(tf.tensor(orig, v.shape)));
        expect(Math.abs(fd - g[i]) / Math.abs(g[i]), v.name).toBeLessThan(1e-2);
      }
      tf.dispose(Object.values(grads));
    } finally {
      lin.lora = null;
      vlin.lora = null;
      tf.dispose([...vars, cols, ids, pv]);
    }
  });
});

describe("typed input errors", () => {
  it("sequence longer than max_position_embeddings", () => {
    const short = new Qwen2VLForConditionalGeneration({ ...model.config, maxPositionEmbeddings: 8 }, model.visual, model.model);
    const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8, 9]], undefined, "int32");
    expect(() => short.forward({ inputIds: ids })).toThrow(ModelInputError);
    expect(() => short.forward({ inputIds: ids })).toThrow(/exceeds max_position_embeddings 8/);
    // and through a cache
    const cache = new KVCache([], 5, [0], [[1, 1, 1, 1, 1]]);
    const ids4 = tf.tensor2d([[1, 2, 3, 4]], undefined, "int32");
    expect(() => short.forward({ inputIds: ids4, pastKeyValues: cache })).toThrow(/cache 5 \+ new 4/);
    ids.dispose();
    ids4.dispose();
  });
  it("image tokens and image features that do not match", () => {
    const ids = refRows(ref, "image_prompt.input_ids");
    const pv = ref.read("batch.pixel_values"); // two images (22 tokens) for a prompt with one slot run of 12
    const pixelValues = tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]);
    const inputIds = tf.tensor2d(ids, undefined, "int32");
    const before = tf.memory().numTensors;
    expect(() => model.forward({ inputIds, pixelValues, imageGridThw: refRows(ref, "batch.image_grid_thw") })).toThrow(/12 <\|image_pad\|> tokens in inputIds, 22 image feature rows/);
    expect(() => model.forward({ inputIds })).toThrow(ModelInputError);
    expect(() => model.forward({ inputIds, pixelValues, imageGridThw: [[1, 6, 6]] })).toThrow(/describes 36/);
    expect(tf.memory().numTensors).toBe(before);
    for (const t of [pixelValues, inputIds]) t.dispose();
  });
  it("token ids outside the vocabulary", () => {
    const ids = tf.tensor2d([[1, model.config.vocabSize]], undefined, "int32");
    expect(() => model.forward({ inputIds: ids })).toThrow(/outside the vocabulary/);
    ids.dispose();
  });
});
