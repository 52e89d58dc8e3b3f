/** Element types this package reads. F16 and BF16 are widened to float32 on read. */
export type SafetensorsDtype = "F32" | "F16" | "BF16" | "I64" | "I32" | "U8" | "BOOL";

/** Element types this package writes. */
export type WritableDtype = "F32" | "BF16" | "I64" | "I32" | "U8" | "BOOL";

/** Bytes per element. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  U8: 1,
  BOOL: 1,
};

export function isDtype(x: unknown): x is SafetensorsDtype {
  return typeof x === "string" && Object.hasOwn(DTYPE_SIZE, x);
}

/** Typed array a tensor of each dtype is returned as. */
export type TensorArray = Float32Array | Int32Array | BigInt64Array | Uint8Array;

/** bfloat16 bit patterns (uint16) -> float32, exact. */
export function bf16ToF32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
  return new Float32Array(out.buffer);
}

/** float32 -> bfloat16 bit patterns, round-to-nearest-even (as torch `.to(bfloat16)`); NaN stays a quiet NaN. */
export function f32ToBf16(src: ArrayLike<number>): Uint16Array {
  const f = src instanceof Float32Array ? src : Float32Array.from(src);
  const bits = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const b = bits[i];
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x0040;
    else out[i] = ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** IEEE half (uint16 bit patterns) -> float32, exact (subnormals, inf, NaN included). */
export function f16ToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const h = src[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0) out[i] = sign * man * 2 ** -24;
    else if (exp === 31) out[i] = man ? Number.NaN : sign * Number.POSITIVE_INFINITY;
    else out[i] = sign * (1 + man / 1024) * 2 ** (exp - 15);
  }
  return out;
}
