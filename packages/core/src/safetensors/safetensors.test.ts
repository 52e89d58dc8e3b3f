import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SafetensorsError } from "../errors";
import { fixturesDir } from "../testing/fixtures";
import { bf16ToF32, f16ToF32, f32ToBf16 } from "./dtypes";
import { openCheckpoint, openSafetensors, parseSafetensors } from "./reader";
import { serializeSafetensors, writeSafetensors } from "./writer";

const FIX = fixturesDir();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-st-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function allSafetensors(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...allSafetensors(p));
    else if (e.name.endsWith(".safetensors")) out.push(p);
  }
  return out;
}

describe("safetensors reader on the test fixtures", () => {
  it("reads back every .safetensors file under test-fixtures", () => {
    const files = allSafetensors(FIX);
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const f of files) {
      const st = openSafetensors(f);
      expect(st.keys().length, f).toBeGreaterThan(0);
      expect(st.metadata).toEqual({ format: "pt" });
      for (const k of st.keys()) {
        const t = st.read(k);
        const n = t.shape.reduce((a, b) => a * b, 1);
        expect(t.data.length, `${f} ${k}`).toBe(n);
        if (t.dtype === "F32" || t.dtype === "BF16") expect(t.data).toBeInstanceOf(Float32Array);
        if (t.dtype === "I64") expect(t.data).toBeInstanceOf(BigInt64Array);
        if (t.dtype === "U8") expect(t.data).toBeInstanceOf(Uint8Array);
      }
    }
  });

  it("qwen2vl-tiny model: 57 BF16 tensors, hub names and shapes, norms near 1, biases and weights near N(0,s)", () => {
    const st = openCheckpoint(path.join(FIX, "qwen2vl-tiny"));
    const keys = st.keys();
    expect(keys).toHaveLength(57);
    for (const k of keys) expect(st.info(k).dtype).toBe("BF16");
    expect(keys).not.toContain("lm_head.weight");
    expect(st.info("visual.patch_embed.proj.weight").shape).toEqual([32, 3, 2, 14, 14]);
    expect(st.info("model.embed_tokens.weight").shape).toEqual([151936, 64]);
    expect(st.info("model.layers.1.mlp.gate_proj.weight").shape).toEqual([128, 64]);
    expect(st.info("model.layers.0.self_attn.k_proj.weight").shape).toEqual([32, 64]); // 2 KV heads x 16
    expect(st.info("visual.blocks.1.attn.qkv.weight").shape).toEqual([96, 32]);
    // README: RMSNorm weight = 1 + N(0, 0.1) -> mean near 1; embed std 0.05.
    const norm = st.read("model.norm.weight").data as Float32Array;
    const mean = norm.reduce((a, b) => a + b, 0) / norm.length;
    expect(mean).toBeGreaterThan(0.95);
    expect(mean).toBeLessThan(1.05);
    const emb = st.read("model.embed_tokens.weight").data as Float32Array;
    let s2 = 0;
    for (let i = 0; i < 64 * 1000; i++) s2 += emb[i] * emb[i];
    expect(Math.sqrt(s2 / 64000)).toBeCloseTo(0.05, 2);
    // BF16 -> F32 is exact: every value has its low 16 bits zero.
    const bits = new Uint32Array(norm.buffer, norm.byteOffset, norm.length);
    expect(bits.every((b) => (b & 0xffff) === 0)).toBe(true);
    // raw bytes widen to the decoded floats
    const raw = st.readRaw("model.norm.weight");
    expect(bf16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, raw.length / 2))).toEqual(norm);
  });

  it("qwen2vl-tiny LoRA adapter: 16 F32 tensors, lora_A [8,64] and lora_B [out,8]", () => {
    const st = openCheckpoint(path.join(FIX, "qwen2vl-tiny", "lora"), { fileName: "adapter_model.safetensors" });
    expect(st.keys()).toHaveLength(16);
    const a = st.read("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    expect(a.dtype).toBe("F32");
    expect(a.shape).toEqual([8, 64]);
    expect(st.info("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight").shape).toEqual([64, 8]);
    expect(st.info("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight").shape).toEqual([32, 8]);
    // A ~ N(0, 0.02)
    const d = a.data as Float32Array;
    const std = Math.sqrt(d.reduce((s, x) => s + x * x, 0) / d.length);
    expect(std).toBeGreaterThan(0.015);
    expect(std).toBeLessThan(0.025);
  });

  it("bertscore-tiny: F32 BertModel weights and the reference P/R/F1 values of the README", () => {
    const m = openSafetensors(path.join(FIX, "bertscore-tiny", "model.safetensors"));
    expect(m.keys()).toHaveLength(39);
    expect(m.info("embeddings.word_embeddings.weight")).toMatchObject({ dtype: "F32", shape: [30522, 32] });
    expect(m.info("embeddings.position_embeddings.weight").shape).toEqual([512, 32]);
    const ref = openSafetensors(path.join(FIX, "bertscore-tiny", "reference.safetensors"));
    const f1 = ref.read("F1").data as Float32Array;
    const want = [0.832454, 0.783373, 0.847064, 0.793449, 0.799318];
    for (const [i, w] of want.entries()) expect(f1[i]).toBeCloseTo(w, 5);
    expect((ref.read("P").data as Float32Array)[0]).toBeCloseTo(0.836978, 5);
    const ids = ref.read("pair0.cand_ids");
    expect(ids.shape).toEqual([12]); // "[CLS] the left lung shows a small op ##ac ##ity . [SEP]"
    expect((ids.data as BigInt64Array)[0]).toBe(101n); // [CLS]
    expect((ids.data as BigInt64Array)[11]).toBe(102n); // [SEP]
  });

  it("image processor reference: I64 grid [1,6,8] for disc, U8 resized image [84,112,3]", () => {
    const st = openSafetensors(path.join(FIX, "qwen2vl-tiny", "reference", "image_processor.safetensors"));
    expect(Array.from(st.read("disc_100x80.image_grid_thw").data as BigInt64Array)).toEqual([1n, 6n, 8n]);
    const img = st.read("disc_100x80.resized_rgb_uint8");
    expect(img.dtype).toBe("U8");
    expect(img.shape).toEqual([84, 112, 3]);
    expect(st.info("disc_100x80.pixel_values").shape).toEqual([48, 1176]);
  });

  it("reads a sharded checkpoint through model.safetensors.index.json", () => {
    const dir = path.join(tmp, "sharded");
    fs.mkdirSync(dir);
    writeSafetensors(path.join(dir, "model-00001-of-00002.safetensors"), {
      a: { dtype: "F32", shape: [2], data: [1, 2] },
      b: { dtype: "I64", shape: [1], data: [7] },
    });
    writeSafetensors(path.join(dir, "model-00002-of-00002.safetensors"), { c: { dtype: "BF16", shape: [1, 1], data: [0.5] } }, { format: "pt" });
    fs.writeFileSync(
      path.join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: { total_size: 18 }, weight_map: { a: "model-00001-of-00002.safetensors", b: "model-00001-of-00002.safetensors", c: "model-00002-of-00002.safetensors" } }),
    );
    const ck = openCheckpoint(dir);
    expect(ck.keys()).toEqual(["a", "b", "c"]);
    expect(Array.from(ck.read("a").data as Float32Array)).toEqual([1, 2]);
    expect(ck.read("b").data).toEqual(new BigInt64Array([7n]));
    expect(ck.read("c")).toEqual({ dtype: "BF16", shape: [1, 1], data: new Float32Array([0.5]) });
    expect(ck.metadata).toEqual({ format: "pt" });
    expect(() => ck.read("zz")).toThrow(/tensor "zz"/);
    // index pointing at a shard that lacks the tensor
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { c: "model-00001-of-00002.safetensors" } }));
    expect(() => openCheckpoint(dir).read("c")).toThrow(SafetensorsError);
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ weight_map: { c: "../x.safetensors" } }));
    expect(() => openCheckpoint(dir)).toThrow(/shard file name/);
    fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), "{not json");
    expect(() => openCheckpoint(dir)).toThrow(SafetensorsError);
    expect(() => openCheckpoint(path.join(tmp, "nope"))).toThrow(SafetensorsError);
  });
});

describe("safetensors writer", () => {
  it("round-trips F32, BF16, I64, I32, U8 and BOOL bit-identically, with __metadata__ and an 8-byte padded header", () => {
    const f32 = new Float32Array([0, -0, 1.5, -3.25e-20, 3.4e38, Number.POSITIVE_INFINITY, Number.NaN, 1e-45]);
    const bf = new Float32Array(1000).map((_, i) => Math.sin(i) * 10 ** ((i % 20) - 10));
    const file = path.join(tmp, "rt.safetensors");
    writeSafetensors(
      file,
      {
        w: { dtype: "F32", shape: [2, 4], data: f32 },
        h: { dtype: "BF16", shape: [10, 100], data: bf },
        ids: { dtype: "I64", shape: [3], data: new BigInt64Array([-1n, 2n ** 62n, 0n]) },
        i: { dtype: "I32", shape: [2], data: [-5, 2147483647] },
        u: { dtype: "U8", shape: [3], data: [0, 128, 255] },
        m: { dtype: "BOOL", shape: [2], data: [1, 0] },
        e: { dtype: "F32", shape: [0, 3], data: [] },
      },
      { format: "pt", note: "ü" },
    );
    const buf = fs.readFileSync(file);
    expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
    const st = openSafetensors(file);
    expect(st.metadata).toEqual({ format: "pt", note: "ü" });
    const w = st.read("w").data as Float32Array;
    expect(new Uint32Array(w.buffer, w.byteOffset, 8)).toEqual(new Uint32Array(f32.buffer));
    const h = st.read("h").data as Float32Array;
    expect(h).toEqual(bf16ToF32(f32ToBf16(bf)));
    // writing the decoded BF16 values again gives the same bytes (exactly representable)
    writeSafetensors(path.join(tmp, "rt2.safetensors"), { h: { dtype: "BF16", shape: [10, 100], data: h } });
    expect(openSafetensors(path.join(tmp, "rt2.safetensors")).readRaw("h")).toEqual(st.readRaw("h"));
    expect(st.read("ids").data).toEqual(new BigInt64Array([-1n, 2n ** 62n, 0n]));
    expect(Array.from(st.read("i").data as Int32Array)).toEqual([-5, 2147483647]);
    expect(Array.from(st.read("u").data as Uint8Array)).toEqual([0, 128, 255]);
    expect(st.read("m")).toMatchObject({ dtype: "BOOL", shape: [2] });
    expect(st.read("e").shape).toEqual([0, 3]);
    // the in-memory serialisation is byte-identical to the file
    expect(Buffer.from(serializeSafetensors({ h: { dtype: "BF16", shape: [10, 100], data: h } }))).toEqual(fs.readFileSync(path.join(tmp, "rt2.safetensors")));
    // no temp files left behind
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("BF16 rounds float32 to nearest-even (ties to even, NaN stays NaN, overflow to inf)", () => {
    const u = new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0x7f7fffff, 0x7fc00001, 0xff800000, 0x00000001]);
    const got = Array.from(f32ToBf16(new Float32Array(u.buffer)));
    // 1.00390625 (tie, even below) -> 0x3f80; tie with odd below -> up to 0x3f82; just above tie -> up; max float -> inf
    expect(got).toEqual([0x3f80, 0x3f82, 0x3f81, 0x3f81, 0x7f80, 0x7fc0, 0xff80, 0x0000]);
  });

  it("F16 widens exactly (normals, subnormals, inf, NaN)", () => {
    const got = f16ToF32(new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000]));
    expect(Array.from(got.slice(0, 6))).toEqual([1, -2, 2 ** -24, 65504, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
    expect(Number.isNaN(got[6])).toBe(true);
    expect(Object.is(got[7], -0)).toBe(true);
  });

  it("reads F16 tensors written by hand", () => {
    const header = Buffer.from(JSON.stringify({ x: { dtype: "F16", shape: [2], data_offsets: [0, 4] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const st = parseSafetensors(Buffer.concat([len, header, Buffer.from([0x00, 0x3c, 0x00, 0xb8])]));
    expect(Array.from(st.read("x").data as Float32Array)).toEqual([1, -0.5]);
  });

  it("rejects bad input with SafetensorsError naming the file and the tensor", () => {
    const f = path.join(tmp, "bad.safetensors");
    expect(() => writeSafetensors(f, { x: { dtype: "F32", shape: [3], data: [1, 2] } })).toThrow(/bad\.safetensors: tensor "x": data has 2 elements/);
    expect(() => writeSafetensors(f, { x: { dtype: "F16" as "F32", shape: [1], data: [1] } })).toThrow(SafetensorsError);
    expect(() => writeSafetensors(f, { x: { dtype: "I64", shape: [1], data: [1.5] } })).toThrow(/not a safe integer/);
    expect(fs.existsSync(f)).toBe(false);
    expect(fs.readdirSync(tmp).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});
