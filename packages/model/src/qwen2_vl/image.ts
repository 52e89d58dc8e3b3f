import fs from "node:fs";
import sharp from "sharp";
import { ImageDecodeError, ProcessorError } from "./processor_errors";

/** An 8-bit RGB image, row-major HWC (`data.length === width * height * 3`). */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** What the processor accepts as an image: a file path, encoded bytes (any format sharp reads), or decoded RGB. */
export type ImageInput = string | Uint8Array | RgbImage;

function isRgbImage(x: unknown): x is RgbImage {
  return typeof x === "object" && x !== null && !(x instanceof Uint8Array) && "width" in x && "height" in x && "data" in x;
}

function describe(input: ImageInput): string {
  if (typeof input === "string") return input;
  if (input instanceof Uint8Array) return `<${input.length}-byte buffer>`;
  return `<RgbImage ${input.width}x${input.height}>`;
}

/**
 * Pillow's `alpha_composite` of an RGBA pixel over an opaque white background (what transformers'
 * `convert_to_rgb` does for images with transparency), in Pillow's integer arithmetic (7 extra bits).
 */
export function compositeOverWhite(c: number, a: number): number {
  if (a === 255) return c;
  if (a === 0) return 255;
  const PREC = 7;
  const outa255 = a * 255 + 255 * (255 - a);
  const coef1 = Math.floor((a * 255 * 255 * (1 << PREC)) / outa255);
  const coef2 = 255 * (1 << PREC) - coef1;
  const tmp = c * coef1 + 255 * coef2 + (0x80 << PREC);
  return (((tmp >> 8) + tmp) >> 8) >> PREC;
}

/**
 * Decodes an image with sharp (PNG, JPEG, WebP, GIF, TIFF, AVIF, ... whatever sharp reads) to 8-bit sRGB.
 * Transparent pixels are composited over white as transformers' `convert_to_rgb` does. No EXIF rotation
 * (Pillow does not apply it either). Throws {@link ImageDecodeError} for a missing or undecodable image.
 */
export async function decodeImage(input: ImageInput): Promise<RgbImage> {
  const label = describe(input);
  if (isRgbImage(input)) {
    if (!Number.isInteger(input.width) || !Number.isInteger(input.height) || input.width <= 0 || input.height <= 0) {
      throw new ImageDecodeError(`image ${label}: width and height must be positive integers`, { code: "IMAGE_DECODE", details: { image: label } });
    }
    if (input.data.length !== input.width * input.height * 3) {
      throw new ImageDecodeError(`image ${label}: expected ${input.width * input.height * 3} bytes of RGB data, got ${input.data.length}`, {
        code: "IMAGE_DECODE",
        details: { image: label },
      });
    }
    return input;
  }
  let bytes: Uint8Array;
  if (typeof input === "string") {
    try {
      bytes = fs.readFileSync(input);
    } catch (e) {
      throw new ImageDecodeError(`image ${label}: cannot read file: ${(e as Error).message}`, {
        code: "PROCESSOR_MISSING_FILE",
        details: { image: label, file: input },
        cause: e,
      });
    }
  } else if (input instanceof Uint8Array) {
    bytes = input;
  } else {
    throw new ProcessorError(`image input must be a path, a Buffer/Uint8Array or an RgbImage, got ${typeof input}`, { code: "BAD_INPUT" });
  }
  let raw: { data: Uint8Array; info: { width: number; height: number; channels: number } };
  try {
    raw = await sharp(bytes, { failOn: "error" }).toColourspace("srgb").ensureAlpha().raw({ depth: "uchar" }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ImageDecodeError(`image ${label}: cannot decode: ${(e as Error).message}`, { code: "IMAGE_DECODE", details: { image: label }, cause: e });
  }
  const { width, height, channels } = raw.info;
  if (channels !== 4) {
    throw new ImageDecodeError(`image ${label}: decoded to ${channels} channels, expected RGBA`, { code: "IMAGE_DECODE", details: { image: label } });
  }
  const src = raw.data;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; j < out.length; i += 4, j += 3) {
    const a = src[i + 3];
    out[j] = compositeOverWhite(src[i], a);
    out[j + 1] = compositeOverWhite(src[i + 1], a);
    out[j + 2] = compositeOverWhite(src[i + 2], a);
  }
  return { width, height, data: out };
}

/** Resampling filters of Pillow's separable resampler (PIL.Image.Resampling values). */
export const PIL_BILINEAR = 2;
export const PIL_BICUBIC = 3;

interface Filter {
  support: number;
  fn(x: number): number;
}

function bicubic(x: number): number {
  // Keys' cubic convolution with a = -0.5, evaluated in the same order as Pillow's bicubic_filter.
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function bilinear(x: number): number {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

function filterFor(resample: number): Filter {
  if (resample === PIL_BICUBIC) return { support: 2, fn: bicubic };
  if (resample === PIL_BILINEAR) return { support: 1, fn: bilinear };
  throw new ProcessorError(`resample ${resample} is not supported (expected 3 = BICUBIC or 2 = BILINEAR)`, {
    code: "PROCESSOR_BAD_CONFIG",
    details: { field: "resample" },
  });
}

/** Pillow's fixed-point precision for 8-bit resampling: 32 - 8 - 2 bits. */
const PRECISION_BITS = 22;

/** Per-output-pixel source bounds and fixed-point weights, as Pillow's precompute_coeffs + normalize_coeffs_8bpc. */
export interface ResampleCoeffs {
  ksize: number;
  /** [xmin, count] per output pixel. */
  bounds: Int32Array;
  /** ksize int weights per output pixel, scaled by 2^22. */
  weights: Int32Array;
}

/** Pillow's precompute_coeffs (box [0, inSize]) followed by its 8-bit fixed-point rounding. Pure. */
export function resampleCoeffs(inSize: number, outSize: number, resample = PIL_BICUBIC): ResampleCoeffs {
  const filter = filterFor(resample);
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    k.fill(0);
    for (let x = 0; x < xmax; x++) {
      const w = filter.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) if (ww !== 0) k[x] /= ww;
    for (let x = 0; x < ksize; x++) {
      const v = k[x];
      weights[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, weights };
}

function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : Math.min(v, 255);
}

/**
 * Resizes an RGB image exactly as Pillow's `Image.resize((w, h), BICUBIC)` does on an "RGB" image
 * (ImagingResampleInner: horizontal pass over the rows the vertical pass needs, then vertical pass;
 * fixed-point weights with 22 fractional bits, rounding bias 2^21, clipping to 0..255). Bit-exact with Pillow 9.4.
 */
export function resizePillow(img: RgbImage, outWidth: number, outHeight: number, resample = PIL_BICUBIC): RgbImage {
  const { width: inW, height: inH } = img;
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new ProcessorError(`resize target must be positive integers, got ${outWidth}x${outHeight}`, { code: "IMAGE_BAD_SIZE" });
  }
  const needH = outWidth !== inW;
  const needV = outHeight !== inH;
  if (!needH && !needV) return { width: inW, height: inH, data: img.data.slice() };
  const vert = resampleCoeffs(inH, outHeight, resample);
  let src = img.data;
  let srcW = inW;
  let rowOffset = 0;
  if (needH) {
    const hor = resampleCoeffs(inW, outWidth, resample);
    const yFirst = vert.bounds[0];
    const yLast = vert.bounds[outHeight * 2 - 2] + vert.bounds[outHeight * 2 - 1];
    const rows = yLast - yFirst;
    const tmp = new Uint8Array(outWidth * rows * 3);
    const half = 1 << (PRECISION_BITS - 1);
    for (let yy = 0; yy < rows; yy++) {
      const rowBase = (yy + yFirst) * inW * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = hor.bounds[xx * 2];
        const n = hor.bounds[xx * 2 + 1];
        const kb = xx * hor.ksize;
        let s0 = half;
        let s1 = half;
        let s2 = half;
        for (let x = 0; x < n; x++) {
          const w = hor.weights[kb + x];
          const p = rowBase + (x + xmin) * 3;
          s0 += src[p] * w;
          s1 += src[p + 1] * w;
          s2 += src[p + 2] * w;
        }
        const o = (yy * outWidth + xx) * 3;
        tmp[o] = clip8(s0);
        tmp[o + 1] = clip8(s1);
        tmp[o + 2] = clip8(s2);
      }
    }
    src = tmp;
    srcW = outWidth;
    rowOffset = yFirst;
  }
  if (!needV) return { width: srcW, height: outHeight, data: src };
  const out = new Uint8Array(srcW * outHeight * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = vert.bounds[yy * 2] - rowOffset;
    const n = vert.bounds[yy * 2 + 1];
    const kb = yy * vert.ksize;
    for (let xx = 0; xx < srcW; xx++) {
      let s0 = half;
      let s1 = half;
      let s2 = half;
      for (let y = 0; y < n; y++) {
        const w = vert.weights[kb + y];
        const p = ((y + ymin) * srcW + xx) * 3;
        s0 += src[p] * w;
        s1 += src[p + 1] * w;
        s2 += src[p + 2] * w;
      }
      const o = (yy * srcW + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return { width: srcW, height: outHeight, data: out };
}
