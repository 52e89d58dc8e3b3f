import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { f16ToF32, initBackend, openCheckpoint, SafetensorsError, type TensorSource, type TensorToWrite, writeSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VLConfig, ModelConfigError } from "./config";
import { buildQwen2VLFromSource, CheckpointError, expectedWeights, loadQwen2VL, normalizeKey } from "./loading";
import type { Qwen2VLForConditionalGeneration } from "./model";
import { refRows, tinyFixtureDir, openReference } from "./parity_fixture";

const fixture = tinyFixtureDir();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-load-"));
const src = openCheckpoint(fixture);
const rawConfig = JSON.parse(fs.readFileSync(path.join(fixture, "config.json"), "utf8"));
let base: Qwen2VLForConditionalGeneration;
const ids = refRows(openReference(), "text_only.input_ids");

/** Writes a checkpoint folder: config.json (+ overrides) and the fixture's tensors, transformed. */
function writeCheckpoint(
  name: string,
  opts: { rename?: (k: string) => string; extra?: Record<string, TensorToWrite>; drop?: string[]; config?: Record<string, unknown>; shards?: number } = {},
): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ ...rawConfig, ...opts.config }));
  const tensors: Record<string, TensorToWrite> = {};
  for (const k of src.keys()) {
    if (opts.drop?.includes(k)) continue;
    const t = src.read(k);
    tensors[opts.rename ? opts.rename(k) : k] = { dtype: "BF16", shape: t.shape, data: t.data as Float32Array };
  }
  Object.assign(tensors, opts.extra ?? {});
  const shards = opts.shards ?? 1;
  if (shards === 1) writeSafetensors(path.join(dir, "model.safetensors"), tensors);
  else {
    const names = Object.keys(tensors).sort();
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const file = `model-0000${s + 1}-of-0000${shards}.safetensors`;
      const part: Record<string, TensorToWrite> = {};
      names.filter((_, i) => i % shards === s).forEach((n) => {
        part[n] = tensors[n];
        weightMap[n] = file;
      });
      writeSafetensors(path.join(dir, file), part);
    }
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  return dir;
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function lastLogits(m: Qwen2VLForConditionalGeneration): Float32Array {
  const x = tf.tensor2d(ids, undefined, "int32");
  const o = m.forward({ inputIds: x, logitsToKeep: 1 });
  const d = o.logits.dataSync() as Float32Array;
  o.logits.dispose();
  x.dispose();
  return d;
}

beforeAll(async () => {
  await initBackend();
  base = (await loadQwen2VL(fixture, { loadProcessor: false })).model;
});
afterAll(() => {
  base?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("loadQwen2VL", () => {
  it("loads the hub checkpoint: every weight, biases and norm weights included, lm_head tied", () => {
    const exp = expectedWeights(base.config);
    expect(exp.has("lm_head.weight")).toBe(false);
    expect(base.model.weights.lmHead).toBeNull();
    // q/k/v biases are real (non-zero) tensors from the file
    const qb = base.model.weights.layers[0].qProj.bias!;
    expect(Array.from(qb.dataSync())).toEqual(Array.from(src.read("model.layers.0.self_attn.q_proj.bias").data as Float32Array));
    expect(base.namedLinears().size).toBe(2 * 7 + 2 * 4 + 2);
    expect([...base.namedLinears().keys()]).toContain("model.layers.1.self_attn.q_proj");
    expect([...base.namedLinears().keys()]).toContain("visual.blocks.0.attn.qkv");
  });

  it("loads transformers >= 4.52 key names from a sharded index, with identical logits", async () => {
    const map = JSON.parse(fs.readFileSync(path.join(fixture, "key_map_transformers_ge_4_52.json"), "utf8")) as Record<string, string>;
    const entries = Object.entries(map).filter(([k]) => !k.startsWith("lm_head")); // lm_head: tied, absent from the file
    expect(entries.length).toBe(src.keys().length);
    for (const [hub, neu] of entries) expect(normalizeKey(neu)).toBe(hub);
    const dir = writeCheckpoint("new-names", { rename: (k) => map[k], shards: 3 });
    const m = (await loadQwen2VL(dir, { loadProcessor: false })).model;
    expect(Array.from(lastLogits(m))).toEqual(Array.from(lastLogits(base)));
    m.dispose();
  });

  it("widens F16 checkpoints to float32 exactly (same logits as the F32 file of the same values)", async () => {
    /** float32 -> IEEE half bits (rounding half up; subnormals kept; no overflow in these weights). */
    const toF16 = (src32: Float32Array): Uint16Array => {
      const u = new Uint32Array(Float32Array.from(src32).buffer);
      const out = new Uint16Array(u.length);
      for (let i = 0; i < u.length; i++) {
        const x = u[i];
        const sign = (x >>> 16) & 0x8000;
        const e = ((x >>> 23) & 0xff) - 112; // rebias 127 -> 15
        const m = x & 0x7fffff;
        if (e >= 1) out[i] = sign | ((e << 10) + ((m + 0x1000) >>> 13));
        else if (e >= -10) {
          const shift = 14 - e;
          out[i] = sign | (((m | 0x800000) + (1 << (shift - 1))) >>> shift);
        } else out[i] = sign;
      }
      return out;
    };
    const dir16 = path.join(tmp, "f16");
    const dir32 = path.join(tmp, "f32-of-f16");
    fs.mkdirSync(dir16, { recursive: true });
    fs.mkdirSync(dir32, { recursive: true });
    for (const d of [dir16, dir32]) fs.writeFileSync(path.join(d, "config.json"), JSON.stringify(rawConfig));
    const header: Record<string, unknown> = {};
    const blobs: Uint8Array[] = [];
    const f32: Record<string, TensorToWrite> = {};
    let off = 0;
    for (const k of src.keys()) {
      const t = src.read(k);
      const bits = toF16(t.data as Float32Array);
      header[k] = { dtype: "F16", shape: t.shape, data_offsets: [off, off + bits.byteLength] };
      off += bits.byteLength;
      blobs.push(new Uint8Array(bits.buffer));
      f32[k] = { dtype: "F32", shape: t.shape, data: f16ToF32(bits) };
    }
    let json = JSON.stringify(header);
    while (json.length % 8 !== 0) json += " ";
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(path.join(dir16, "model.safetensors"), Buffer.concat([len, Buffer.from(json), ...blobs]));
    writeSafetensors(path.join(dir32, "model.safetensors"), f32);
    const m16 = (await loadQwen2VL(dir16, { loadProcessor: false })).model;
    const m32 = (await loadQwen2VL(dir32, { loadProcessor: false })).model;
    expect(Array.from(lastLogits(m16))).toEqual(Array.from(lastLogits(m32)));
    // and F16 rounding really changed the weights (the test would not notice a reader that ignored the dtype otherwise)
    expect(maxAbs(lastLogits(m16), lastLogits(base))).toBeGreaterThan(0);
    m16.dispose();
    m32.dispose();
  });

  it("loads an untied lm_head", async () => {
    const e = src.read("model.embed_tokens.weight");
    const half = (e.data as Float32Array).map((x) => x * 0.5);
    const dir = writeCheckpoint("untied", { config: { tie_word_embeddings: false }, extra: { "lm_head.weight": { dtype: "BF16", shape: e.shape, data: half } } });
    const m = (await loadQwen2VL(dir, { loadProcessor: false })).model;
    expect(m.model.weights.lmHead).not.toBeNull();
    const a = lastLogits(m);
    const b = lastLogits(base);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - 0.5 * b[i]));
    expect(worst).toBeLessThan(1e-5);
    m.dispose();
    // untied config without lm_head.weight: missing key
    const dir2 = writeCheckpoint("untied-missing", { config: { tie_word_embeddings: false } });
    await expect(loadQwen2VL(dir2, { loadProcessor: false })).rejects.toThrow(/missing keys \(1\): lm_head.weight/);
  });

  it("lists every missing, unexpected and wrongly shaped key in one typed error, and leaks no tensor", async () => {
    const before = tf.memory().numTensors;
    const bad = src.read("model.norm.weight");
    const dir = writeCheckpoint("bad-keys", {
      drop: ["model.layers.1.self_attn.k_proj.bias", "visual.merger.mlp.2.weight", "model.norm.weight"],
      extra: {
        "model.layers.7.self_attn.q_proj.weight": { dtype: "F32", shape: [1], data: [0] },
        "model.norm.weight": { dtype: "F32", shape: [bad.shape[0] - 1], data: (bad.data as Float32Array).slice(1) },
      },
    });
    let err: unknown;
    try {
      await loadQwen2VL(dir, { loadProcessor: false });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CheckpointError);
    const ce = err as CheckpointError;
    expect(ce.details.missing).toEqual(["model.layers.1.self_attn.k_proj.bias", "visual.merger.mlp.2.weight"]);
    expect(ce.details.unexpected).toEqual(["model.layers.7.self_attn.q_proj.weight"]);
    expect(ce.details.badShape).toEqual(["model.norm.weight: [63], expected [64]"]);
    expect(ce.message).toContain(dir);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("corrupt or missing files and unsupported model types are typed errors", async () => {
    const dir = writeCheckpoint("corrupt");
    const file = path.join(dir, "model.safetensors");
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    await expect(loadQwen2VL(dir, { loadProcessor: false })).rejects.toThrow(SafetensorsError);
    fs.rmSync(file);
    await expect(loadQwen2VL(dir, { loadProcessor: false })).rejects.toThrow(/no model.safetensors/);
    await expect(loadQwen2VL(path.join(tmp, "nope"), { loadProcessor: false })).rejects.toThrow(ModelConfigError);
    const dir2 = writeCheckpoint("llama", { config: { model_type: "llama" } });
    await expect(loadQwen2VL(dir2, { loadProcessor: false })).rejects.toThrow(/unsupported model_type "llama"/);
  });

  it("never holds two copies of a weight: each tensor is read once and uploaded before the next read; one device copy in total", () => {
    const cfg = loadQwen2VLConfig(fixture);
    const inner = openCheckpoint(fixture);
    const log: { name: string; bytesBefore: number; f32Bytes: number }[] = [];
    const spy: TensorSource = Object.assign(Object.create(inner) as TensorSource, {
      read(name: string) {
        const t = inner.read(name);
        log.push({ name, bytesBefore: tf.memory().numBytes, f32Bytes: t.data.length * 4 });
        return t;
      },
    });
    const start = tf.memory().numBytes;
    const m = buildQwen2VLFromSource(cfg, spy);
    // every expected weight read exactly once (tied lm_head: no read, no copy)
    expect(log.map((l) => l.name).sort()).toEqual([...expectedWeights(cfg).keys()].sort());
    // at each read, everything read so far is on the device exactly once: the host never held two decoded tensors
    let sum = 0;
    for (const l of log) {
      expect(l.bytesBefore - start).toBe(sum);
      sum += l.f32Bytes;
    }
    // the device holds exactly one float32 copy of every weight
    expect(tf.memory().numBytes - start).toBe(sum);
    let params = 0;
    for (const shape of expectedWeights(cfg).values()) params += shape.reduce((a, b) => a * b, 1);
    expect(sum).toBe(params * 4);
    m.dispose();
    expect(tf.memory().numBytes).toBe(start);
  });

  it('weightResidency "host": Linear, embed and lm_head weights stay on the host, the forward is identical', async () => {
    const start = tf.memory().numBytes;
    const { model: m } = await loadQwen2VL(fixture, { loadProcessor: false, weightResidency: "host" });
    const deviceBytes = tf.memory().numBytes - start;
    // only norms and biases on the device (a few KB), not the 19.5M-parameter embedding
    expect(deviceBytes).toBeLessThan(64 * 1024);
    for (const l of m.namedLinears().values()) expect(l.residency).toBe("host");
    expect(() => m.namedLinears().get("model.layers.0.self_attn.q_proj")!.weight).toThrow(/host-resident/);
    const ref2 = openReference();
    const ids2 = refRows(ref2, "image_prompt.input_ids");
    const pv = ref2.read("image_prompt.pixel_values");
    const grid = refRows(ref2, "image_prompt.image_grid_thw");
    const run = (mm: Qwen2VLForConditionalGeneration) => {
      const x = tf.tensor2d(ids2, undefined, "int32");
      const p = tf.tensor2d(pv.data as Float32Array, pv.shape as [number, number]);
      const o = mm.forward({ inputIds: x, pixelValues: p, imageGridThw: grid, logitsToKeep: 2 });
      const d = o.logits.dataSync() as Float32Array;
      tf.dispose([o.logits, x, p]);
      return d;
    };
    const before = tf.memory().numTensors;
    const a = run(m);
    expect(tf.memory().numTensors).toBe(before); // per-call uploads are freed
    expect(tf.memory().numBytes - start).toBe(deviceBytes);
    const b = run(base);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    expect(worst).toBeLessThan(1e-5);
    m.dispose();
    expect(tf.memory().numBytes).toBe(start);
  });
});
