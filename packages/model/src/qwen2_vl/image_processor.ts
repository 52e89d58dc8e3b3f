import fs from "node:fs";
import path from "node:path";
import { decodeImage, type ImageInput, PIL_BICUBIC, type RgbImage, resizePillow } from "./image";
import { ProcessorError } from "./processor_errors";

/**
 * Qwen2VLImageProcessor settings (preprocessor_config.json). Defaults are transformers 4.47's
 * (and those of Qwen2-VL-2B/7B-Instruct, the paper's base models, except max_pixels which the hub file sets to 12845056).
 */
export interface ImageProcessorConfig {
  /** Resize with smart_resize. Default true. */
  doResize: boolean;
  /** PIL resampling filter id; 3 = BICUBIC (default), 2 = BILINEAR. */
  resample: number;
  /** Multiply pixels by rescaleFactor. Default true. */
  doRescale: boolean;
  /** Default 1/255. */
  rescaleFactor: number;
  /** Normalise with imageMean / imageStd. Default true. */
  doNormalize: boolean;
  /** Per-channel mean. Default OpenAI CLIP [0.48145466, 0.4578275, 0.40821073]. */
  imageMean: [number, number, number];
  /** Per-channel std. Default OpenAI CLIP [0.26862954, 0.26130258, 0.27577711]. */
  imageStd: [number, number, number];
  /** Convert to RGB (transparency composited over white). Default true. */
  doConvertRgb: boolean;
  /** Lower bound on resized height*width. Default 56*56 = 3136. */
  minPixels: number;
  /** Upper bound on resized height*width. Default 28*28*1280 = 1003520. */
  maxPixels: number;
  /** ViT patch side. Default 14. */
  patchSize: number;
  /** Frames per temporal patch; a still image is repeated this many times. Default 2. */
  temporalPatchSize: number;
  /** Spatial merge window side (merge² patches -> one LLM token). Default 2. */
  mergeSize: number;
}

export const DEFAULT_IMAGE_PROCESSOR_CONFIG: Readonly<ImageProcessorConfig> = {
  doResize: true,
  resample: PIL_BICUBIC,
  doRescale: true,
  rescaleFactor: 1 / 255,
  doNormalize: true,
  imageMean: [0.48145466, 0.4578275, 0.40821073],
  imageStd: [0.26862954, 0.26130258, 0.27577711],
  doConvertRgb: true,
  minPixels: 56 * 56,
  maxPixels: 28 * 28 * 1280,
  patchSize: 14,
  temporalPatchSize: 2,
  mergeSize: 2,
};

/** Python's round() (half to even) for non-negative floats. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * transformers' smart_resize: the (height, width) nearest to the input that are multiples of `factor`
 * (= patch * merge) with min_pixels <= h*w <= max_pixels, keeping the aspect ratio. Pure.
 * Throws ProcessorError (IMAGE_BAD_SIZE) for an aspect ratio above 200 or a non-positive size.
 */
export function smartResize(height: number, width: number, factor = 28, minPixels = 56 * 56, maxPixels = 28 * 28 * 1280): [number, number] {
  if (!(height > 0 && width > 0)) {
    throw new ProcessorError(`image size ${height}x${width} (HxW) is not positive`, { code: "IMAGE_BAD_SIZE", details: { height, width } });
  }
  if (Math.max(height, width) / Math.min(height, width) > 200) {
    throw new ProcessorError(`absolute aspect ratio must be at most 200, got ${height}/${width} (HxW)`, {
      code: "IMAGE_BAD_SIZE",
      details: { height, width },
    });
  }
  let hBar = roundHalfEven(height / factor) * factor;
  let wBar = roundHalfEven(width / factor) * factor;
  if (hBar * wBar > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    hBar = Math.floor(height / beta / factor) * factor;
    wBar = Math.floor(width / beta / factor) * factor;
  } else if (hBar * wBar < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    hBar = Math.ceil((height * beta) / factor) * factor;
    wBar = Math.ceil((width * beta) / factor) * factor;
  }
  return [hBar, wBar];
}

/** Output of the image processor for a list of images (all images' patches concatenated in order). */
export interface ImageProcessorOutput {
  /** Row-major [N, C*T*P*P] float32 patches. */
  pixelValues: Float32Array;
  pixelShape: [number, number];
  /** [t, h, w] patch grid per image. */
  imageGridThw: number[][];
}

/** One image's patches (see {@link ImageProcessorOutput}) plus the resized RGB pixels. */
export interface ProcessedImage {
  pixelValues: Float32Array;
  pixelShape: [number, number];
  gridThw: [number, number, number];
  resized: RgbImage;
}

function readJson(file: string): any {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ProcessorError(`${file}: cannot read: ${(e as Error).message}`, { code: "PROCESSOR_MISSING_FILE", details: { file }, cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ProcessorError(`${file}: not valid JSON: ${(e as Error).message}`, { code: "PROCESSOR_CORRUPT_FILE", details: { file }, cause: e });
  }
}

function num(file: string, obj: any, key: string, fallback: number): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ProcessorError(`${file}: field "${key}" must be a number, got ${JSON.stringify(v)}`, { code: "PROCESSOR_BAD_CONFIG", details: { file, field: key } });
  }
  return v;
}

function triple(file: string, obj: any, key: string, fallback: [number, number, number]): [number, number, number] {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v === "number") return [v, v, v];
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === "number")) {
    throw new ProcessorError(`${file}: field "${key}" must be 3 numbers, got ${JSON.stringify(v)}`, { code: "PROCESSOR_BAD_CONFIG", details: { file, field: key } });
  }
  return [v[0], v[1], v[2]];
}

/** Reads preprocessor_config.json (top-level min_pixels/max_pixels, else size.min_pixels/max_pixels). */
export function loadImageProcessorConfig(fileOrDir: string): ImageProcessorConfig {
  const file = fs.existsSync(fileOrDir) && fs.statSync(fileOrDir).isDirectory() ? path.join(fileOrDir, "preprocessor_config.json") : fileOrDir;
  const j = readJson(file);
  if (typeof j !== "object" || j === null || Array.isArray(j)) {
    throw new ProcessorError(`${file}: expected a JSON object`, { code: "PROCESSOR_CORRUPT_FILE", details: { file } });
  }
  const d = DEFAULT_IMAGE_PROCESSOR_CONFIG;
  const size = typeof j.size === "object" && j.size !== null ? j.size : {};
  const cfg: ImageProcessorConfig = {
    doResize: j.do_resize ?? d.doResize,
    resample: num(file, j, "resample", d.resample),
    doRescale: j.do_rescale ?? d.doRescale,
    rescaleFactor: num(file, j, "rescale_factor", d.rescaleFactor),
    doNormalize: j.do_normalize ?? d.doNormalize,
    imageMean: triple(file, j, "image_mean", d.imageMean),
    imageStd: triple(file, j, "image_std", d.imageStd),
    doConvertRgb: j.do_convert_rgb ?? d.doConvertRgb,
    minPixels: num(file, j, "min_pixels", num(file, size, "min_pixels", d.minPixels)),
    maxPixels: num(file, j, "max_pixels", num(file, size, "max_pixels", d.maxPixels)),
    patchSize: num(file, j, "patch_size", d.patchSize),
    temporalPatchSize: num(file, j, "temporal_patch_size", d.temporalPatchSize),
    mergeSize: num(file, j, "merge_size", d.mergeSize),
  };
  for (const k of ["patchSize", "temporalPatchSize", "mergeSize"] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) {
      throw new ProcessorError(`${file}: ${k} must be a positive integer, got ${cfg[k]}`, { code: "PROCESSOR_BAD_CONFIG", details: { file, field: k } });
    }
  }
  return cfg;
}

/**
 * Rescale + normalise + temporal tiling + patch flattening of an already-resized RGB image, in HF's
 * float32 arithmetic (rescale in float64 then cast; (x - mean) / std in float32) and HF's order:
 * rows merge-window major (for each merge window its merge² patches), columns (channel, temporal, py, px). Pure.
 */
export function patchify(img: RgbImage, cfg: ImageProcessorConfig): { pixelValues: Float32Array; gridThw: [number, number, number] } {
  const P = cfg.patchSize;
  const M = cfg.mergeSize;
  const T = cfg.temporalPatchSize;
  const { width: W, height: H } = img;
  if (H % (P * M) !== 0 || W % (P * M) !== 0) {
    throw new ProcessorError(`image ${W}x${H} (WxH) is not a multiple of patch*merge = ${P * M}; resize it first`, {
      code: "IMAGE_BAD_SIZE",
      details: { width: W, height: H },
    });
  }
  const gh = H / P;
  const gw = W / P;
  const C = 3;
  const D = C * T * P * P;
  // normalised planes, float32 as numpy computes them
  const plane = new Float32Array(H * W * C);
  const mean = cfg.imageMean.map(Math.fround);
  const std = cfg.imageStd.map(Math.fround);
  for (let i = 0; i < H * W; i++) {
    for (let c = 0; c < C; c++) {
      let v = img.data[i * 3 + c];
      if (cfg.doRescale) v = Math.fround(v * cfg.rescaleFactor);
      if (cfg.doNormalize) v = Math.fround(Math.fround(v - mean[c]) / std[c]);
      plane[i * C + c] = v;
    }
  }
  const out = new Float32Array(gh * gw * D);
  let row = 0;
  for (let bh = 0; bh < gh / M; bh++) {
    for (let bw = 0; bw < gw / M; bw++) {
      for (let mh = 0; mh < M; mh++) {
        for (let mw = 0; mw < M; mw++) {
          const y0 = (bh * M + mh) * P;
          const x0 = (bw * M + mw) * P;
          const base = row * D;
          for (let c = 0; c < C; c++) {
            for (let t = 0; t < T; t++) {
              for (let py = 0; py < P; py++) {
                const colBase = base + ((c * T + t) * P + py) * P;
                const src = ((y0 + py) * W + x0) * C + c;
                for (let px = 0; px < P; px++) out[colBase + px] = plane[src + px * C];
              }
            }
          }
          row++;
        }
      }
    }
  }
  return { pixelValues: out, gridThw: [1, gh, gw] };
}

/** Qwen2VLImageProcessor (transformers 4.47 semantics) for still images. */
export class Qwen2VLImageProcessor {
  readonly config: ImageProcessorConfig;

  constructor(config: Partial<ImageProcessorConfig> = {}) {
    this.config = { ...DEFAULT_IMAGE_PROCESSOR_CONFIG, ...config };
  }

  /** Loads preprocessor_config.json from a checkpoint folder (or the file itself). */
  static fromPretrained(dirOrFile: string): Qwen2VLImageProcessor {
    return new Qwen2VLImageProcessor(loadImageProcessorConfig(dirOrFile));
  }

  /** The resized (height, width) for an input of the given size. */
  targetSize(height: number, width: number): [number, number] {
    const c = this.config;
    if (!c.doResize) return [height, width];
    return smartResize(height, width, c.patchSize * c.mergeSize, c.minPixels, c.maxPixels);
  }

  /** Number of LLM tokens (<|image_pad|>) an image grid expands to. */
  tokensFor(gridThw: number[]): number {
    return (gridThw[0] * gridThw[1] * gridThw[2]) / (this.config.mergeSize * this.config.mergeSize);
  }

  /** Processes one decoded RGB image (resize, rescale, normalise, patchify). */
  processRgb(img: RgbImage): ProcessedImage {
    const [h, w] = this.targetSize(img.height, img.width);
    const resized = h === img.height && w === img.width ? img : resizePillow(img, w, h, this.config.resample);
    const { pixelValues, gridThw } = patchify(resized, this.config);
    const c = this.config;
    return { pixelValues, pixelShape: [gridThw[1] * gridThw[2], 3 * c.temporalPatchSize * c.patchSize * c.patchSize], gridThw, resized };
  }

  /** Decodes and processes images; their patches are concatenated in order. */
  async preprocess(images: ImageInput[]): Promise<ImageProcessorOutput> {
    const parts: ProcessedImage[] = [];
    for (const im of images) parts.push(this.processRgb(await decodeImage(im)));
    const D = 3 * this.config.temporalPatchSize * this.config.patchSize ** 2;
    const n = parts.reduce((a, p) => a + p.pixelShape[0], 0);
    const pixelValues = new Float32Array(n * D);
    let off = 0;
    for (const p of parts) {
      pixelValues.set(p.pixelValues, off);
      off += p.pixelValues.length;
    }
    return { pixelValues, pixelShape: [n, D], imageGridThw: parts.map((p) => [...p.gridThw]) };
  }
}
