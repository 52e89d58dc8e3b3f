import fs from "node:fs";
import path from "node:path";
import { fixturesDir, openSafetensors } from "@rarl/core";
import { describe, expect, it } from "vitest";
import { compositeOverWhite, decodeImage, resampleCoeffs, resizePillow } from "./image";
import { ImageDecodeError } from "./processor_errors";

function fixture(): string {
  return path.join(fixturesDir(), "qwen2vl-tiny");
}
const FX = fixture();

describe("Pillow-exact bicubic resize", () => {
  it("reproduces PIL's BICUBIC output bit for bit on both fixture PNGs", async () => {
    const ref = openSafetensors(path.join(FX, "reference", "image_processor.safetensors"));
    for (const name of ["disc_100x80", "checker_56x140"]) {
      const img = await decodeImage(path.join(FX, "images", `${name}.png`));
      const want = ref.read(`${name}.resized_rgb_uint8`);
      const [h, w] = want.shape;
      const got = resizePillow(img, w, h);
      expect([got.height, got.width]).toEqual([h, w]);
      let mismatches = 0;
      for (let i = 0; i < want.data.length; i++) if (want.data[i] !== got.data[i]) mismatches++;
      expect(mismatches, name).toBe(0);
    }
  });

  it("fixed-point weights of each output pixel sum to about 2^22 and stay inside the source", () => {
    for (const [inS, outS] of [[80, 84], [300, 56], [7, 140], [140, 56]]) {
      const c = resampleCoeffs(inS, outS);
      for (let x = 0; x < outS; x++) {
        let s = 0;
        for (let k = 0; k < c.ksize; k++) s += c.weights[x * c.ksize + k];
        expect(Math.abs(s - 2 ** 22)).toBeLessThanOrEqual(c.ksize);
        expect(c.bounds[2 * x]).toBeGreaterThanOrEqual(0);
        expect(c.bounds[2 * x] + c.bounds[2 * x + 1]).toBeLessThanOrEqual(inS);
      }
    }
  });

  it("keeps a constant image constant when down- and up-scaling (no drift from rounding)", () => {
    const img = { width: 37, height: 23, data: new Uint8Array(37 * 23 * 3).fill(201) };
    for (const [w, h] of [[10, 50], [90, 7]]) {
      const out = resizePillow(img, w, h);
      expect(out.data.every((v) => v === 201)).toBe(true);
    }
  });
});

describe("decodeImage", () => {
  it("decodes PNG to RGB uint8 of the right size", async () => {
    const img = await decodeImage(fs.readFileSync(path.join(FX, "images", "disc_100x80.png")));
    expect([img.width, img.height, img.data.length]).toEqual([100, 80, 100 * 80 * 3]);
  });

  it("throws ImageDecodeError naming a missing file or undecodable bytes", async () => {
    await expect(decodeImage("/nonexistent/x.png")).rejects.toThrow(ImageDecodeError);
    await expect(decodeImage("/nonexistent/x.png")).rejects.toThrow(/x\.png/);
    const err = await decodeImage(new Uint8Array([1, 2, 3, 4, 5])).catch((e) => e);
    expect(err).toBeInstanceOf(ImageDecodeError);
    expect(err.code).toBe("IMAGE_DECODE");
  });

  it("composites transparency over white as PIL's alpha_composite does", () => {
    expect(compositeOverWhite(10, 255)).toBe(10);
    expect(compositeOverWhite(10, 0)).toBe(255);
    // half-transparent black over white is mid grey
    expect(compositeOverWhite(0, 128)).toBe(127);
  });
});
