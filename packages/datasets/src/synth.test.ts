import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { decodeImage } from "./image";
import { loadDataset } from "./load";
import { synthesize } from "./synth";
import { tmpDir } from "./test-helpers";

function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = createHash("sha256").update(fs.readFileSync(p)).digest("hex");
    }
  };
  walk(dir);
  return out;
}

describe("synthetic medical VQA", () => {
  it("is byte-identical across runs with the same seed, and differs with another seed", async () => {
    const a = tmpDir();
    const b = tmpDir();
    const c = tmpDir();
    await synthesize(a, { n: 24, seed: 7, size: 64 });
    await synthesize(b, { n: 24, seed: 7, size: 64 });
    await synthesize(c, { n: 24, seed: 8, size: 64 });
    const ha = hashes(a);
    expect(Object.keys(ha)).toHaveLength(13); // 12 images + samples.jsonl
    expect(ha).toEqual(hashes(b));
    expect(ha["samples.jsonl"]).not.toBe(hashes(c)["samples.jsonl"]);
  });

  it("writes a loadable RARL set: no image shared by train and test, answers consistent with the drawn lesion", async () => {
    const d = tmpDir();
    const res = await synthesize(d, { n: 60, seed: 3, size: 64, testFraction: 0.25 });
    const ds = loadDataset({ format: "rarl", path: d });
    const samples = await ds.toArray();
    expect(samples).toHaveLength(60);
    expect(ds.skipped).toEqual([]);
    const trainImgs = new Set(samples.filter((s) => s.split === "train").map((s) => (s.image as { path: string }).path));
    const testImgs = new Set(samples.filter((s) => s.split === "test").map((s) => (s.image as { path: string }).path));
    expect(testImgs.size).toBeGreaterThan(0);
    for (const p of testImgs) expect(trainImgs.has(p)).toBe(false);
    const kinds = new Set(samples.map((s) => s.extra?.kind));
    expect(kinds).toEqual(new Set(["closed", "open", "reasoning"]));
    for (const s of samples) {
      const spec = res.images.find((i) => i.id === s.extra?.image_id)!;
      expect(s.reasoning!.length).toBeGreaterThan(40);
      if (s.question === "Which side is the lesion on?") expect(s.answer).toBe(spec.side);
      if (s.question === "Does this image look abnormal?") expect(s.answer).toBe(spec.lesion ? "Yes" : "No");
      if (s.question === "What imaging modality is this?") expect(s.answer).toBe(spec.modality);
    }
    // the lesion is visibly brighter on the stated side (image right half = patient's left)
    const withLesion = res.images.filter((i) => i.lesion && i.modality === "X-ray").slice(0, 3);
    for (const spec of withLesion) {
      const img = await decodeImage({ id: spec.id, image: { path: `images/${spec.id}.png` }, question: "q", answer: "a", answer_type: "open", source: "synth" }, d);
      const { data, width } = img;
      const at = (x: number, y: number) => data[(Math.round(y) * width + Math.round(x)) * 3];
      const mirror = width - spec.cx!;
      expect(at(spec.cx!, spec.cy!)).toBeGreaterThan(at(mirror, spec.cy!) + 80);
      expect(spec.cx! > width / 2).toBe(spec.side === "left");
    }
  });

  it("named splits: disjoint images, one question family each, style-shifted images", async () => {
    const d = tmpDir();
    const res = await synthesize(d, {
      seed: 5,
      size: 48,
      splits: [
        { name: "base", images: 12, family: "O" },
        { name: "val", images: 6, family: "T" },
        { name: "shift", images: 6, family: "T", style: { lesionIntensity: 170, gamma: 1.6, grain: 0.3 } },
      ],
    });
    expect(res.images).toHaveLength(24);
    const imagesOf = (sp: string) => new Set(res.samples.filter((s) => s.split === sp).map((s) => (s.extra as { image_id: string }).image_id));
    const base = imagesOf("base");
    const val = imagesOf("val");
    const shift = imagesOf("shift");
    expect(base.size + val.size + shift.size).toBe(24);
    for (const id of val) expect(base.has(id) || shift.has(id)).toBe(false);
    expect(res.samples).toHaveLength(48);
    const fam = (sp: string) => new Set(res.samples.filter((s) => s.split === sp).map((s) => (s.extra as { family: string }).family));
    expect([...fam("base")]).toEqual(["O"]);
    expect([...fam("val")]).toEqual(["T"]);
    const tTypes = new Set(res.samples.filter((s) => s.split !== "base").map((s) => (s.extra as { qtype: string }).qtype));
    for (const q of tTypes) expect(["abnormal", "healthy", "lesion-on-side"]).toContain(q);
    for (const s of res.samples.filter((x) => x.split !== "base")) expect(s.answer === "Yes" || s.answer === "No").toBe(true);
    for (const s of res.samples.filter((x) => (x.extra as { qtype: string }).qtype === "is-modality")) expect(s.answer).toBe(s.question.includes(` ${s.modality} `) ? "Yes" : "No");
    // the shifted style changes the pixels: the same spec drawn in the default style differs
    const plain = tmpDir();
    await synthesize(plain, { seed: 5, size: 48, splits: [{ name: "base", images: 12, family: "O" }, { name: "val", images: 6, family: "T" }, { name: "shift", images: 6, family: "T" }] });
    const first = [...shift][0];
    const img = (id: string) => ({ id, image: { path: `images/${id}.png` }, question: "", answer: "", answer_type: "open" as const });
    const a = await decodeImage(img(first) as never, d);
    const b = await decodeImage(img(first) as never, plain);
    const mean = (x: { data: Uint8Array }) => x.data.reduce((p, v) => p + v, 0) / x.data.length;
    expect(mean(a)).toBeLessThan(mean(b)); // gamma 1.6 darkens
    const firstVal = [...val][0];
    expect(fs.readFileSync(path.join(d, "images", `${firstVal}.png`))).toEqual(fs.readFileSync(path.join(plain, "images", `${firstVal}.png`)));
  });

  it("rejects bad options", async () => {
    await expect(synthesize(tmpDir(), { splits: [{ name: "a", images: 2 }, { name: "a", images: 2 }] })).rejects.toThrow(/split name "a" must be unique/);
    await expect(synthesize(tmpDir(), { style: { gamma: 0 } })).rejects.toThrow(/style\.gamma must be in/);
    await expect(synthesize(tmpDir(), { splits: [{ name: "a", images: 2, style: { grain: 2 } }] })).rejects.toThrow(/split "a": style\.grain/);
    await expect(synthesize(tmpDir(), { n: 0 })).rejects.toThrow(/n must be a positive integer/);
    await expect(synthesize(tmpDir(), { size: 8 })).rejects.toThrow(/size/);
  });
});
