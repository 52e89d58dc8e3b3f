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

  it("rejects bad options", async () => {
    await expect(synthesize(tmpDir(), { n: 0 })).rejects.toThrow(/n must be a positive integer/);
    await expect(synthesize(tmpDir(), { size: 8 })).rejects.toThrow(/size/);
  });
});
