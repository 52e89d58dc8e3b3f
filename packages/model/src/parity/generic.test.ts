/**
 * Genericity of the parity runner on a folder laid out like the fixture but with other content: a prompt with two
 * images of odd sizes (one upscaled by min_pixels, one wide), image files named only in outputs.json, and fields
 * derived from what the folder holds. The reference tensors here are produced by this package's own model and
 * processor (already checked against transformers on qwen2vl-tiny by run.test.ts), so this test checks the runner's
 * plumbing (case discovery, image assignment, pixel slicing, masks), not numerical parity.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixturesDir, initBackend, type TensorToWrite, writeSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "../qwen2_vl/loading";
import { Qwen2VLProcessor } from "../qwen2_vl/processor";
import { getRopeIndex } from "../qwen2_vl/rope";
import { runParity } from "./run";

function fixture(): string {
  return path.join(fixturesDir(), "qwen2vl-tiny");
}
const FX = fixture();
let dir: string;

async function png(file: string, w: number, h: number, f: (x: number, y: number) => [number, number, number]): Promise<void> {
  const data = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(f(x, y), (y * w + x) * 3);
  await sharp(data, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
}

beforeAll(async () => {
  await initBackend();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "parity-generic-"));
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.json", "preprocessor_config.json"]) {
    fs.symlinkSync(path.join(FX, f), path.join(dir, f));
  }
  fs.mkdirSync(path.join(dir, "pics"));
  fs.mkdirSync(path.join(dir, "reference"));
  const wide = path.join(dir, "pics", "wide_300x90.png");
  const tiny = path.join(dir, "pics", "tiny_50x30.png");
  await png(wide, 300, 90, (x, y) => [(x * 255) / 299, 128 + 100 * Math.sin(x / 5), (y * 255) / 89].map(Math.round) as [number, number, number]);
  await png(tiny, 50, 30, (x, y) => (x === 25 || y === 15 ? [10, 10, 10] : [(x + y) * 3, 200 - x, 60 + y]));

  const processor = Qwen2VLProcessor.fromPretrained(dir);
  const messages = [[{ role: "user", content: [{ type: "image" }, { type: "text", text: "Compare" }, { type: "image" }, { type: "text", text: " these." }] }]];
  const rendered = messages.map((m) => processor.applyChatTemplate(m as any, { addGenerationPrompt: true }));
  const out = await processor.process({ text: rendered, images: [wide, tiny] });
  const model = (await loadQwen2VL(dir, { loadProcessor: false })).model;
  const B = 1;
  const S = out.inputIds[0].length;
  const ids = tf.tensor2d(out.inputIds, [B, S], "int32");
  const pv = tf.tensor2d(out.pixelValues, out.pixelShape);
  const fwd = model.forward({ inputIds: ids, pixelValues: pv, imageGridThw: out.imageGridThw, outputHiddenStates: true });
  const cols = [0, 1, 2, 3, ...new Set(out.inputIds[0])];
  const i64 = (a: number[]) => BigInt64Array.from(a.map(BigInt));
  const t: Record<string, TensorToWrite> = {
    logit_cols: { dtype: "I64", shape: [cols.length], data: i64(cols) },
    "two_images.input_ids": { dtype: "I64", shape: [B, S], data: i64(out.inputIds.flat()) },
    "two_images.attention_mask": { dtype: "I64", shape: [B, S], data: i64(out.attentionMask.flat()) },
    "two_images.pixel_values": { dtype: "F32", shape: out.pixelShape, data: out.pixelValues },
    "two_images.image_grid_thw": { dtype: "I64", shape: [2, 3], data: i64(out.imageGridThw.flat()) },
    "two_images.logits_cols": { dtype: "F32", shape: [B, S, cols.length], data: tf.tidy(() => tf.gather(fwd.logits, tf.tensor1d(cols, "int32"), 2).dataSync() as Float32Array) },
    "two_images.logsumexp": { dtype: "F32", shape: [B, S], data: tf.tidy(() => tf.logSumExp(fwd.logits, 2).dataSync() as Float32Array) },
    "two_images.hidden_states": { dtype: "F32", shape: [fwd.hiddenStates!.length, B, S, 64], data: tf.tidy(() => tf.stack(fwd.hiddenStates!).dataSync() as Float32Array) },
    "two_images.position_ids": { dtype: "I64", shape: [3, B, S], data: i64(getRopeIndex(out.inputIds, out.imageGridThw, out.attentionMask, model.config).positionIds.flat(2)) },
    "two_images.rope_deltas": { dtype: "I64", shape: [B, 1], data: i64(fwd.ropeDeltas) },
  };
  writeSafetensors(path.join(dir, "reference", "outputs.safetensors"), t);
  tf.dispose([ids, pv, fwd.logits, ...fwd.hiddenStates!]);
  model.dispose();
  const perImage: Record<string, TensorToWrite> = {};
  const images: Record<string, unknown> = {};
  for (const [name, file] of [["wide_300x90", wide], ["tiny_50x30", tiny]] as const) {
    const p = await processor.imageProcessor.preprocess([file]);
    perImage[`${name}.pixel_values`] = { dtype: "F32", shape: p.pixelShape, data: p.pixelValues };
    perImage[`${name}.image_grid_thw`] = { dtype: "I64", shape: [1, 3], data: i64(p.imageGridThw[0]) };
    images[name] = { file: `pics/${name}.png`, image_grid_thw: p.imageGridThw[0] };
  }
  writeSafetensors(path.join(dir, "reference", "image_processor.safetensors"), perImage);
  const json = {
    images,
    prompts: { two_images: { messages, rendered, expanded: out.expandedText, input_ids: out.inputIds, attention_mask: out.attentionMask, image_grid_thw: out.imageGridThw } },
  };
  fs.writeFileSync(path.join(dir, "reference", "outputs.json"), JSON.stringify(json));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("runParity on another folder", () => {
  it("derives the cases and fields from the folder: two odd-sized images in one prompt pass", async () => {
    const r = await runParity(dir);
    expect(Object.keys(r.cases)).toEqual(["processor", "two_images"]);
    expect(r.cases.processor.status).toBe("PASS");
    expect(Object.keys(r.cases.processor.fields)).toEqual(
      expect.arrayContaining(["two_images.pixel_values", "two_images.input_ids", "wide_300x90.pixel_values", "tiny_50x30.image_grid_thw"]),
    );
    expect(r.cases.two_images.status).toBe("PASS");
    expect(Object.keys(r.cases.two_images.fields).sort()).toEqual(["hidden_states", "logits_cols", "logsumexp", "position_ids", "rope_deltas"]);
    expect(r.overall).toBe("PASS");
  });

  it("fails when the images are fed in the wrong order", async () => {
    const j = JSON.parse(fs.readFileSync(path.join(dir, "reference", "outputs.json"), "utf8"));
    const saved = JSON.stringify(j);
    j.prompts.two_images.images = ["tiny_50x30", "wide_300x90"];
    fs.writeFileSync(path.join(dir, "reference", "outputs.json"), JSON.stringify(j));
    try {
      const r = await runParity(dir, { cases: ["processor"] });
      expect(r.cases.processor.status).toBe("FAIL");
      expect(r.cases.processor.fields["two_images.input_ids"].max_abs_diff).toBeGreaterThan(0);
    } finally {
      fs.writeFileSync(path.join(dir, "reference", "outputs.json"), saved);
    }
  });
});
