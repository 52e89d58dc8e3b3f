import fs from "node:fs";
import path from "node:path";
import { fixturesDir, openSafetensors } from "@rarl/core";
import { describe, expect, it } from "vitest";
import { DEFAULT_IMAGE_PROCESSOR_CONFIG, loadImageProcessorConfig, patchify, Qwen2VLImageProcessor, smartResize } from "./image_processor";
import { ProcessorError } from "./processor_errors";

function fixture(): string {
  return path.join(fixturesDir(), "qwen2vl-tiny");
}
const FX = fixture();

describe("smartResize", () => {
  it("gives the fixture's resized sizes", () => {
    expect(smartResize(80, 100, 28, 3136, 200704)).toEqual([84, 112]);
    expect(smartResize(140, 56, 28, 3136, 200704)).toEqual([140, 56]);
  });
  it("rounds half to even like Python's round()", () => {
    // 42/28 = 1.5 -> 2, 70/28 = 2.5 -> 2
    expect(smartResize(42, 70, 28, 1, 1e9)).toEqual([56, 56]);
  });
  it("scales down to max_pixels and up to min_pixels, multiples of the factor", () => {
    const [h, w] = smartResize(1000, 2000, 28, 3136, 200704);
    expect(h * w).toBeLessThanOrEqual(200704);
    expect(h % 28 === 0 && w % 28 === 0).toBe(true);
    expect([h, w]).toEqual([308, 616]);
    const [h2, w2] = smartResize(30, 50, 28, 3136, 200704);
    expect(h2 * w2).toBeGreaterThanOrEqual(3136);
    expect([h2, w2]).toEqual([56, 84]);
  });
  it("rejects an aspect ratio above 200 with a typed error", () => {
    expect(() => smartResize(1, 500)).toThrow(ProcessorError);
  });
});

describe("patchify", () => {
  it("orders rows merge-window major and columns (channel, temporal, py, px)", () => {
    const cfg = { ...DEFAULT_IMAGE_PROCESSOR_CONFIG, doRescale: false, doNormalize: false, patchSize: 2, mergeSize: 2 };
    // 8x4 (WxH) image, value = x + 10*y + 100*c
    const W = 8;
    const H = 4;
    const data = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let c = 0; c < 3; c++) data[(y * W + x) * 3 + c] = x + 10 * y + 100 * c;
    const { pixelValues, gridThw } = patchify({ width: W, height: H, data }, cfg);
    expect(gridThw).toEqual([1, 2, 4]);
    const D = 3 * 2 * 2 * 2;
    // row 4 = second merge window (columns 4..7), its first patch: x0=4, y0=0
    const at = (row: number, c: number, t: number, py: number, px: number) => pixelValues[row * D + ((c * 2 + t) * 2 + py) * 2 + px];
    expect(at(4, 0, 0, 0, 0)).toBe(4);
    // row 2 = first window, patch (mh=1, mw=0): y0=2, x0=0
    expect(at(2, 1, 1, 1, 1)).toBe(100 + 1 + 30);
    // temporal copy is identical
    expect(at(7, 2, 0, 1, 0)).toBe(at(7, 2, 1, 1, 0));
    expect(at(7, 2, 0, 1, 0)).toBe(200 + 6 + 30);
  });
});

describe("Qwen2VLImageProcessor", () => {
  it("reads preprocessor_config.json", () => {
    const c = loadImageProcessorConfig(FX);
    expect([c.minPixels, c.maxPixels, c.patchSize, c.mergeSize, c.temporalPatchSize, c.resample]).toEqual([3136, 200704, 14, 2, 2, 3]);
  });

  it("pixel_values straight from both PNGs match the reference within 1e-5, with image_grid_thw", async () => {
    const ref = openSafetensors(path.join(FX, "reference", "image_processor.safetensors"));
    const ip = Qwen2VLImageProcessor.fromPretrained(FX);
    for (const name of ["disc_100x80", "checker_56x140"]) {
      const out = await ip.preprocess([path.join(FX, "images", `${name}.png`)]);
      const want = ref.read(`${name}.pixel_values`);
      expect(out.pixelShape).toEqual(want.shape);
      let maxDiff = 0;
      for (let i = 0; i < want.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs((want.data[i] as number) - out.pixelValues[i]));
      expect(maxDiff, name).toBeLessThanOrEqual(1e-5);
      expect(out.imageGridThw).toEqual([Array.from(ref.read(`${name}.image_grid_thw`).data as BigInt64Array, Number)]);
    }
  });

  it("concatenates several images in order", async () => {
    const ip = Qwen2VLImageProcessor.fromPretrained(FX);
    const a = path.join(FX, "images", "disc_100x80.png");
    const b = path.join(FX, "images", "checker_56x140.png");
    const both = await ip.preprocess([a, b]);
    const one = await ip.preprocess([b]);
    expect(both.pixelShape).toEqual([88, 1176]);
    expect(both.imageGridThw).toEqual([[1, 6, 8], [1, 10, 4]]);
    expect(both.pixelValues.subarray(48 * 1176)).toEqual(one.pixelValues);
  });

  it("reports a corrupt config file by name", () => {
    const tmp = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "ipcfg-"));
    fs.writeFileSync(path.join(tmp, "preprocessor_config.json"), "{not json");
    expect(() => loadImageProcessorConfig(tmp)).toThrow(/preprocessor_config\.json/);
    expect(() => loadImageProcessorConfig(path.join(tmp, "missing.json"))).toThrow(ProcessorError);
    fs.rmSync(tmp, { recursive: true });
  });
});
