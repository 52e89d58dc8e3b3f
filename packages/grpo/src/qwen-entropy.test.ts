import path from "node:path";
import { fixturesDir, initBackend, Rng } from "@rarl/core";
import { buildBatch, type LoadedQwen2VL, loadQwen2VL } from "@rarl/model";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { QwenPolicy } from "./qwen-policy";

const FIXTURE = path.join(fixturesDir(), "qwen2vl-tiny");
const IMAGE = path.join(FIXTURE, "images", "checker_56x140.png");

let loaded: LoadedQwen2VL;
beforeAll(async () => {
  await initBackend();
  loaded = await loadQwen2VL(FIXTURE);
});
afterAll(() => loaded?.model.dispose());

describe("QwenPolicy.completionLogprobsWithEntropy (tiny Qwen2-VL)", () => {
  it("gives the same log-probs as completionLogprobs and the entropy of the full temperature-scaled softmax, in one chunked pass", async () => {
    const policy = new QwenPolicy(loaded.model, loaded.processor, { r: 4, alpha: 8 });
    const h = await policy.prepare({ messages: [{ role: "user", content: [{ type: "image" }, { type: "text", text: "Is there a lesion?" }] }], images: [IMAGE] });
    const comps = await policy.generate(h, { numSamples: 2, maxNewTokens: 4, temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, rng: new Rng(3) });
    const items = comps.map((c) => ({ prepared: h, completionIds: c.ids }));
    const T = Math.max(...comps.map((c) => c.ids.length));
    const temperature = 0.7;
    const plain = policy.completionLogprobs(items, T, temperature);
    const { logp, entropy } = policy.completionLogprobsWithEntropy(items, T, temperature);
    expect(Array.from(logp.dataSync())).toEqual(Array.from(plain.dataSync()));
    // Reference: the model's full logits (no chunking, no hand-written gradient), / temperature, softmax entropy.
    const padId = loaded.processor!.tokenizer.specialIds.pad ?? 151643;
    const enc = buildBatch(
      items.map((it) => ({ inputIds: it.prepared.promptIds })),
      padId,
      items.map((it) => it.completionIds),
    );
    const Lc = enc.completionLength;
    const Lp = enc.length - Lc;
    const want = tf.tidy(() => {
      const out = loaded.model.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask, imageEmbeds: tf.concat([h.imageEmbeds!, h.imageEmbeds!], 0) as tf.Tensor2D, imageGridThw: [...h.imageGridThw!, ...h.imageGridThw!] });
      const lg = tf.div(tf.slice(out.logits, [0, Lp - 1, 0], [2, Lc, -1]), temperature);
      const lsm = tf.logSoftmax(lg);
      return tf.neg(tf.sum(tf.mul(tf.exp(lsm), lsm), 2)).arraySync() as number[][];
    });
    const got = entropy.arraySync() as number[][];
    for (const [b, c] of comps.entries()) for (let t = 0; t < c.ids.length; t++) expect(Math.abs(got[b][t] - want[b][t])).toBeLessThan(1e-4 + 2e-5 * Math.abs(want[b][t]));
    expect(entropy.shape).toEqual([2, T]);
    tf.dispose([plain, logp, entropy, enc.inputIds, enc.attentionMask, ...(enc.pixelValues ? [enc.pixelValues] : [])]);
    // No leak across repeated calls.
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) {
      const r = policy.completionLogprobsWithEntropy(items, T, temperature);
      tf.dispose([r.logp, r.entropy]);
    }
    expect(tf.memory().numTensors).toBe(n0);
    policy.release(h);
    policy.dispose();
  });
});
