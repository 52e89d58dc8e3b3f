import fs from "node:fs";
import os from "node:os";
import { SafetensorsError } from "../errors";
import { openTemp } from "../fs";
import { DTYPE_SIZE, f32ToBf16, type WritableDtype } from "./dtypes";

/** One tensor to write. `data` holds product(shape) elements in row-major order. */
export interface TensorToWrite {
  /** F32/BF16 take numbers (BF16 rounds float32 to nearest-even); I64 takes BigInt64Array or integers; I32, U8, BOOL take integers. */
  dtype: WritableDtype;
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array | ArrayLike<number>;
}

function bad(file: string, tensor: string | undefined, what: string): never {
  throw new SafetensorsError(tensor !== undefined ? `${file}: tensor "${tensor}": ${what}` : `${file}: ${what}`, {
    code: "SAFETENSORS_WRITE",
    details: { file, tensor },
  });
}

function encode(file: string, name: string, t: TensorToWrite): Uint8Array {
  if (!Object.hasOwn(DTYPE_SIZE, t.dtype) || t.dtype === ("F16" as string)) bad(file, name, `cannot write dtype ${JSON.stringify(t.dtype)}`);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    bad(file, name, `shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) bad(file, name, `data has ${t.data.length} elements, shape [${t.shape.join(", ")}] needs ${n}`);
  const d = t.data;
  let out: ArrayBufferView;
  switch (t.dtype) {
    case "F32":
      out = d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>);
      break;
    case "BF16":
      out = f32ToBf16(d as ArrayLike<number>);
      break;
    case "I64":
      if (d instanceof BigInt64Array) out = d;
      else {
        const a = new BigInt64Array(n);
        for (let i = 0; i < n; i++) {
          const v = (d as ArrayLike<number>)[i];
          if (!Number.isSafeInteger(v)) bad(file, name, `I64 element ${i} is not a safe integer: ${v}`);
          a[i] = BigInt(v);
        }
        out = a;
      }
      break;
    case "I32":
      out = d instanceof Int32Array ? d : Int32Array.from(d as ArrayLike<number>);
      break;
    case "U8":
    case "BOOL":
      out = d instanceof Uint8Array ? d : Uint8Array.from(d as ArrayLike<number>);
      if (t.dtype === "BOOL" && (out as Uint8Array).some((v) => v > 1)) bad(file, name, "BOOL data must be 0 or 1");
      break;
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Orders tensors as Python `safetensors` does and builds the 8-byte length + padded JSON header. */
function layout(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): { names: string[]; head: Uint8Array } {
  if (os.endianness() !== "LE") bad(file, undefined, "big-endian hosts are not supported");
  for (const [name, t] of Object.entries(tensors)) {
    if (name === "__metadata__") bad(file, name, "reserved tensor name");
    if (!t || !Object.hasOwn(DTYPE_SIZE, t.dtype) || t.dtype === ("F16" as string)) bad(file, name, `cannot write dtype ${JSON.stringify(t?.dtype)}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(file, name, `shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
    }
  }
  const names = Object.keys(tensors).sort((a, b) => {
    const s = DTYPE_SIZE[tensors[b].dtype] - DTYPE_SIZE[tensors[a].dtype];
    return s !== 0 ? s : a < b ? -1 : a > b ? 1 : 0;
  });
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== "string") bad(file, undefined, `__metadata__["${k}"] must be a string`);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const len = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + len] };
    offset += len;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(head, 8);
  return { names, head };
}

/**
 * Writes tensors to a .safetensors file atomically (temp file in the same directory, then rename).
 * Layout as Python `safetensors`: tensors ordered by dtype size (largest first) then name, header
 * padded with spaces to a multiple of 8 bytes, `__metadata__` (string map) when given.
 * Tensors are encoded and written one at a time, so peak extra memory is one tensor.
 */
export function writeSafetensors(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  const { names, head } = layout(file, tensors, metadata);
  const tmp = openTemp(file);
  try {
    fs.writeSync(tmp.fd, head);
    for (const name of names) {
      const bytes = encode(file, name, tensors[name]);
      let done = 0;
      while (done < bytes.length) done += fs.writeSync(tmp.fd, bytes, done, Math.min(bytes.length - done, 2 ** 30));
    }
    tmp.commit();
  } catch (e) {
    tmp.abort();
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(`${file}: write failed: ${(e as Error).message}`, { code: "SAFETENSORS_WRITE", details: { file }, cause: e });
  }
}

/** The bytes {@link writeSafetensors} would write, in memory (for small tensors, tests and uploads). */
export function serializeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>, label = "<buffer>"): Uint8Array {
  const { names, head } = layout(label, tensors, metadata);
  return new Uint8Array(Buffer.concat([head, ...names.map((n) => encode(label, n, tensors[n]))]));
}
