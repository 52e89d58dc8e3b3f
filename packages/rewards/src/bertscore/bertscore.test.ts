import fs from "node:fs";
import path from "node:path";
import { initBackend, openSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EncoderError } from "../errors";
import { fixturesDir } from "@rarl/core";
import { BertScorer } from "./bertscore";
import { BertEncoder, parseEncoderConfig } from "./encoder";

const dir = path.join(fixturesDir(), "bertscore-tiny");
const ref = JSON.parse(fs.readFileSync(path.join(dir, "reference.json"), "utf8"));
const refSt = openSafetensors(path.join(dir, "reference.safetensors"));
const pairs: Array<{ candidate: string; reference: string; cand_ids: number[]; ref_ids: number[]; P: number; R: number; F1: number }> = ref.pairs;
let scorer: BertScorer;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

beforeAll(async () => {
  await initBackend();
  scorer = await BertScorer.fromFolder(dir);
});
afterAll(() => scorer.dispose());

describe("BERTScore parity with bert_score on bertscore-tiny", () => {
  it("token ids are exact", async () => {
    expect(await scorer.tokenize(pairs.map((p) => p.candidate))).toEqual(pairs.map((p) => p.cand_ids));
    expect(await scorer.tokenize(pairs.map((p) => p.reference))).toEqual(pairs.map((p) => p.ref_ids));
  });
  it("last-layer embeddings within 1e-4 (padded batch vs unpadded reference)", async () => {
    const { embeddings } = await scorer.embed(pairs.flatMap((p) => [p.candidate, p.reference]));
    let worst = 0;
    pairs.forEach((_, i) => {
      worst = Math.max(worst, maxAbsDiff(embeddings[2 * i], refSt.read(`pair${i}.cand_embeddings`).data as Float32Array));
      worst = Math.max(worst, maxAbsDiff(embeddings[2 * i + 1], refSt.read(`pair${i}.ref_embeddings`).data as Float32Array));
    });
    expect(worst).toBeLessThan(1e-4);
  });
  it("P/R/F1 within 1e-5", async () => {
    const prf = await scorer.scorePRF(
      pairs.map((p) => p.candidate),
      pairs.map((p) => p.reference),
    );
    pairs.forEach((p, i) => {
      expect(Math.abs(prf[i].P - p.P)).toBeLessThan(1e-5);
      expect(Math.abs(prf[i].R - p.R)).toBeLessThan(1e-5);
      expect(Math.abs(prf[i].F - p.F1)).toBeLessThan(1e-5);
    });
    // the TextSimilarity face (micro-batched) gives the same F1
    const f = await Promise.all(pairs.map((p) => scorer.score([p.candidate], [p.reference])));
    pairs.forEach((p, i) => {
      expect(Math.abs(f[i][0] - p.F1)).toBeLessThan(1e-5);
    });
    expect(await scorer.score([""], ["x"])).toEqual([0]);
  });
  it("idf weights follow bert_score (log((M+1)/(df+1)), [CLS]/[SEP] 0) over the reference similarity matrices", async () => {
    const refs = pairs.map((p) => p.reference);
    const idfScorer = await BertScorer.create(scorer.encoder, scorer.tokenizer, { idfCorpus: refs });
    const prf = await idfScorer.scorePRF(
      pairs.map((p) => p.candidate),
      refs,
    );
    const df = new Map<number, number>();
    for (const p of pairs) for (const id of new Set(p.ref_ids)) df.set(id, (df.get(id) ?? 0) + 1);
    const w = (id: number) => (id === 101 || id === 102 ? 0 : Math.log((pairs.length + 1) / ((df.get(id) ?? 0) + 1)));
    pairs.forEach((p, i) => {
      const sim = refSt.read(`pair${i}.sim`).data as Float32Array;
      const [tc, tr] = [p.cand_ids.length, p.ref_ids.length];
      let pn = 0;
      let pd = 0;
      for (let a = 0; a < tc; a++) {
        let m = -Infinity;
        for (let b = 0; b < tr; b++) m = Math.max(m, sim[a * tr + b]);
        pn += w(p.cand_ids[a]) * m;
        pd += w(p.cand_ids[a]);
      }
      let rn = 0;
      let rd = 0;
      for (let b = 0; b < tr; b++) {
        let m = -Infinity;
        for (let a = 0; a < tc; a++) m = Math.max(m, sim[a * tr + b]);
        rn += w(p.ref_ids[b]) * m;
        rd += w(p.ref_ids[b]);
      }
      expect(Math.abs(prf[i].P - pn / pd)).toBeLessThan(1e-5);
      expect(Math.abs(prf[i].R - rn / rd)).toBeLessThan(1e-5);
      expect(prf[i].P).not.toBeCloseTo(p.P, 4); // idf changes the score
    });
  });
  it("baseline rescaling is (s - b) / (1 - b)", async () => {
    const b = { P: 0.5, R: 0.6, F: 0.7 };
    const resc = await BertScorer.create(scorer.encoder, scorer.tokenizer, { baseline: b });
    const [r] = await resc.scorePRF([pairs[0].candidate], [pairs[0].reference]);
    expect(r.P).toBeCloseTo((pairs[0].P - 0.5) / 0.5, 5);
    expect(r.R).toBeCloseTo((pairs[0].R - 0.6) / 0.4, 5);
    expect(r.F).toBeCloseTo((pairs[0].F1 - 0.7) / 0.3, 5);
  });
  it("a chosen layer: layer 0 is the embedding LayerNorm output and differs from the last", async () => {
    const l0 = await BertScorer.create(scorer.encoder, scorer.tokenizer, { layer: 0 });
    const [a] = await l0.scorePRF([pairs[0].candidate], [pairs[0].reference]);
    expect(Math.abs(a.F - pairs[0].F1)).toBeGreaterThan(1e-3);
    await expect(BertScorer.create(scorer.encoder, scorer.tokenizer, { layer: 3 })).rejects.toThrow(EncoderError);
  });
  it("keeps tf.memory().numTensors flat across repeated scoring", async () => {
    const cands = pairs.map((p) => p.candidate);
    const refs = pairs.map((p) => p.reference);
    await scorer.scorePRF(cands, refs);
    const before = tf.memory().numTensors;
    for (let k = 0; k < 3; k++) await scorer.scorePRF(cands, refs);
    expect(tf.memory().numTensors).toBe(before);
  });
  it("truncates a very long text to the model maximum instead of failing", async () => {
    const [ids] = await scorer.tokenize(["word ".repeat(5000)]);
    expect(ids.length).toBe(512);
    expect(ids[511]).toBe(102);
    const [f] = await scorer.score(["lung ".repeat(3000)], ["lung"]);
    expect(f).toBeGreaterThan(0);
  });
});

describe("encoder loading", () => {
  it("RoBERTa positions start at padding_idx + 1 (same output as BERT with shifted position rows)", async () => {
    const st = openSafetensors(path.join(dir, "model.safetensors"));
    const cfg = parseEncoderConfig(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")));
    const get = (n: string) => {
      const t = st.read(n);
      return { shape: t.shape, data: t.data as Float32Array };
    };
    const pos = get("embeddings.position_embeddings.weight");
    const H = cfg.hiddenSize;
    const shifted = new Float32Array(pos.data.length);
    shifted.set(pos.data.subarray(0, pos.data.length - 2 * H), 2 * H); // row t+2 <- row t
    const roberta = new BertEncoder({ ...cfg, family: "roberta", padTokenId: 1 }, (n) =>
      n === "embeddings.position_embeddings.weight" ? { shape: pos.shape, data: shifted } : st.has(n) ? get(n) : undefined,
    );
    const bert = new BertEncoder(cfg, (n) => (st.has(n) ? get(n) : undefined));
    const ids = [pairs[0].cand_ids, pairs[1].cand_ids];
    const [a, b] = [await bert.embed(ids), await roberta.embed(ids)];
    expect(maxAbsDiff(a[0], b[0])).toBeLessThan(1e-5);
    expect(maxAbsDiff(a[1], b[1])).toBeLessThan(1e-5);
    bert.dispose();
    roberta.dispose();
  });
  it("bad folders give typed errors naming the file", () => {
    expect(() => BertEncoder.fromFolder("/nonexistent-enc")).toThrow(/missing config\.json/);
    expect(() => parseEncoderConfig({ model_type: "gpt2" }, "x/config.json")).toThrow(/x\/config\.json: model_type "gpt2"/);
    const st = openSafetensors(path.join(dir, "model.safetensors"));
    const cfg = parseEncoderConfig(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")));
    expect(
      () =>
        new BertEncoder(cfg, (n) => (n.includes("layer.1.output.dense.weight") ? undefined : { shape: st.info(n).shape, data: st.read(n).data as Float32Array })),
    ).toThrow(/missing tensor "encoder\.layer\.1\.output\.dense\.weight"/);
  });
});

