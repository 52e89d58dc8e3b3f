import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { SafetensorsError } from "../errors";
import { DTYPE_SIZE, type WritableDtype } from "./dtypes";
import { openSafetensors, parseSafetensors } from "./reader";
import { serializeSafetensors, writeSafetensors } from "./writer";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-fuzz-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const DTYPES: WritableDtype[] = ["F32", "BF16", "I64", "I32", "U8", "BOOL"];

/** A valid safetensors file of 2..5 small non-empty tensors, produced by our writer. */
const validFile = fc
  .array(
    fc.record({
      dtype: fc.constantFrom(...DTYPES),
      shape: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 3 }),
    }),
    { minLength: 2, maxLength: 5 },
  )
  .map((specs) => {
    const tensors: Parameters<typeof writeSafetensors>[1] = {};
    specs.forEach((s, i) => {
      const n = s.shape.reduce((a, b) => a * b, 1);
      tensors[`t${i}.weight`] = { dtype: s.dtype, shape: s.shape, data: Array.from({ length: n }, (_, j) => (j % 2) as number) };
    });
    return serializeSafetensors(tensors, { format: "pt" });
  });

function split(buf: Uint8Array): { header: Record<string, any>; data: Uint8Array } {
  const n = Number(Buffer.from(buf).readBigUInt64LE(0));
  return { header: JSON.parse(Buffer.from(buf.subarray(8, 8 + n)).toString("utf8")), data: buf.subarray(8 + n) };
}
function join(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const h = Buffer.from(headerText ?? JSON.stringify(header), "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return new Uint8Array(Buffer.concat([len, h, data]));
}
const tensorNames = (h: Record<string, any>) => Object.keys(h).filter((k) => k !== "__metadata__");

/** Reads everything; returns normally only if the buffer is a consistent file. */
function readAll(buf: Uint8Array): void {
  const st = parseSafetensors(buf, "fuzz.safetensors");
  for (const k of st.keys()) {
    const t = st.read(k);
    expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
  }
}

function expectSafetensorsError(buf: Uint8Array): void {
  let err: unknown;
  try {
    readAll(buf);
  } catch (e) {
    err = e;
  }
  expect(err, "corrupted buffer was accepted").toBeInstanceOf(SafetensorsError);
  expect((err as SafetensorsError).message).toContain("fuzz.safetensors");
}

type Corruption = (buf: Uint8Array, r: number, r2: number) => Uint8Array;

/** Each corruption makes the file invalid for certain; r, r2 in [0,1) pick where. */
const CORRUPTIONS: Record<string, Corruption> = {
  truncate: (buf, r) => buf.slice(0, Math.floor(r * buf.length)),
  hugeHeaderLength: (buf, r) => {
    const out = buf.slice();
    const v = BigInt(buf.length - 7) + BigInt(Math.floor(r * 2 ** 52)) * BigInt(1 + Math.floor(r * 4096));
    Buffer.from(out.buffer).writeBigUInt64LE(v > 2n ** 64n - 1n ? 2n ** 64n - 1n : v, 0);
    return out;
  },
  maxHeaderLength: (buf) => {
    const out = buf.slice();
    Buffer.from(out.buffer).writeBigUInt64LE(2n ** 64n - 1n, 0);
    return out;
  },
  offsetsPastEnd: (buf, r, r2) => {
    const { header, data } = split(buf);
    const names = tensorNames(header);
    const e = header[names[Math.floor(r * names.length)]];
    const len = e.data_offsets[1] - e.data_offsets[0];
    const begin = data.length - len + 1 + Math.floor(r2 * 2 ** 40);
    e.data_offsets = [begin, begin + len];
    return join(header, data);
  },
  wrongDtypeSize: (buf, r, r2) => {
    const { header, data } = split(buf);
    const names = tensorNames(header);
    const e = header[names[Math.floor(r * names.length)]];
    const others = (Object.keys(DTYPE_SIZE) as (keyof typeof DTYPE_SIZE)[]).filter((d) => DTYPE_SIZE[d] !== DTYPE_SIZE[e.dtype as keyof typeof DTYPE_SIZE]);
    e.dtype = others[Math.floor(r2 * others.length)];
    return join(header, data);
  },
  wrongShape: (buf, r, r2) => {
    const { header, data } = split(buf);
    const names = tensorNames(header);
    const e = header[names[Math.floor(r * names.length)]];
    e.shape = [...e.shape, 2 + Math.floor(r2 * 1e6)];
    return join(header, data);
  },
  hugeShape: (buf, r) => {
    const { header, data } = split(buf);
    const e = header[tensorNames(header)[Math.floor(r * tensorNames(header).length)]];
    e.shape = [2 ** 26, 2 ** 26, 2 ** 26];
    return join(header, data);
  },
  overlap: (buf, r, r2) => {
    const { header, data } = split(buf);
    const names = tensorNames(header);
    const i = Math.floor(r * names.length);
    const j = (i + 1 + Math.floor(r2 * (names.length - 1))) % names.length;
    const a = header[names[i]];
    const b = header[names[j]];
    const lenB = b.data_offsets[1] - b.data_offsets[0];
    const aLen = a.data_offsets[1] - a.data_offsets[0];
    const start = a.data_offsets[0] + Math.floor(r2 * aLen);
    b.data_offsets = [start, start + lenB];
    return join(header, data);
  },
  badDtype: (buf, r, r2) => {
    const { header, data } = split(buf);
    const names = tensorNames(header);
    header[names[Math.floor(r * names.length)]].dtype = ["F8_E4M3", "f32", "", "COMPLEX64", 4][Math.floor(r2 * 5)];
    return join(header, data);
  },
  badShapeValue: (buf, r, r2) => {
    const { header, data } = split(buf);
    const names = tensorNames(header);
    header[names[Math.floor(r * names.length)]].shape = [[-1], [1.5], ["2"], null, [2 ** 60]][Math.floor(r2 * 5)];
    return join(header, data);
  },
  badOffsets: (buf, r, r2) => {
    const { header, data } = split(buf);
    const names = tensorNames(header);
    header[names[Math.floor(r * names.length)]].data_offsets = [[5, 1], [-4, 0], [0], "0,4", [0.5, 4.5], [0, 2 ** 70]][Math.floor(r2 * 6)];
    return join(header, data);
  },
  notJson: (buf, r) => {
    const { header, data } = split(buf);
    const text = JSON.stringify(header);
    const cut = 1 + Math.floor(r * (text.length - 2));
    return join(null, data, `${text.slice(0, cut)}\u0000${text.slice(cut)}`);
  },
  notObject: (buf, r) => join(null, split(buf).data, ["[]", "42", '"x"', "null", "[{}]"][Math.floor(r * 5)]),
  badMetadata: (buf, r) => {
    const { header, data } = split(buf);
    header.__metadata__ = [{ format: 1 }, ["pt"], "pt", { a: { b: "c" } }][Math.floor(r * 4)];
    return join(header, data);
  },
  invalidUtf8: (buf, r) => {
    const out = buf.slice();
    const n = Number(Buffer.from(out.buffer).readBigUInt64LE(0));
    out[8 + Math.floor(r * n)] = 0xff;
    return out;
  },
  shortHeaderLength: (buf, r) => {
    const out = buf.slice(0, Math.floor(r * 8));
    return out;
  },
};

describe("safetensors reader on corrupted input (fast-check)", () => {
  it("1,500 surely-invalid buffers (truncated, huge header length, offsets past end, wrong dtype size, overlaps, bad JSON...) each end in SafetensorsError", () => {
    const kinds = Object.keys(CORRUPTIONS);
    const seen = new Set<string>();
    fc.assert(
      fc.property(validFile, fc.constantFrom(...kinds), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (buf, kind, r, r2) => {
        seen.add(kind);
        expectSafetensorsError(CORRUPTIONS[kind](buf, r, r2));
      }),
      { numRuns: 1500, seed: 20261122 },
    );
    expect(seen.size).toBe(kinds.length);
  });

  it("1,000 buffers with random byte flips either read consistently or end in SafetensorsError, never another exception", () => {
    let rejected = 0;
    fc.assert(
      fc.property(validFile, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (buf, flips) => {
        const out = buf.slice();
        for (const [pos, x] of flips) out[pos % out.length] ^= x;
        try {
          readAll(out);
        } catch (e) {
          if (!(e instanceof SafetensorsError)) throw e;
          rejected++;
        }
      }),
      { numRuns: 1000, seed: 7 },
    );
    expect(rejected).toBeGreaterThan(100); // most flips hit the header or length and must be caught
  });

  it("the file reader gives the same verdicts as the buffer reader (200 corrupted files on disk)", () => {
    const kinds = Object.keys(CORRUPTIONS);
    fc.assert(
      fc.property(validFile, fc.constantFrom(...kinds), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (buf, kind, r) => {
        const f = path.join(tmp, "fuzz.safetensors");
        fs.writeFileSync(f, CORRUPTIONS[kind](buf, r, 1 - r));
        let err: unknown;
        try {
          const st = openSafetensors(f);
          for (const k of st.keys()) st.read(k);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(SafetensorsError);
        expect((err as SafetensorsError).details.file).toBe(f);
      }),
      { numRuns: 200, seed: 3 },
    );
  });

  it("names the offending tensor", () => {
    const f = path.join(tmp, "named.safetensors");
    writeSafetensors(f, { "layer.0.w": { dtype: "F32", shape: [2], data: [1, 2] }, "layer.1.w": { dtype: "F32", shape: [2], data: [3, 4] } });
    const { header, data } = split(new Uint8Array(fs.readFileSync(f)));
    header["layer.1.w"].shape = [3];
    expect(() => parseSafetensors(join(header, data), "x.safetensors")).toThrow(/x\.safetensors: tensor "layer\.1\.w": shape \[3\] x F32/);
    header["layer.1.w"].shape = [2];
    header["layer.1.w"].data_offsets = [4, 12];
    header["layer.0.w"].data_offsets = [0, 8];
    expect(() => parseSafetensors(join(header, new Uint8Array(16)), "x.safetensors")).toThrow(/tensor "layer\.1\.w".*overlap tensor "layer\.0\.w"/);
  });
});
