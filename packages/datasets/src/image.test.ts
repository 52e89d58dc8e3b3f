import fs from "node:fs";
import path from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { decodeImage, imageInput } from "./image";
import { loadDataset } from "./load";
import { exportSamples, countSamples } from "./stats";
import { png, tmpDir, writeJson, writeParquet, writePng } from "./test-helpers";
import type { Sample } from "./types";

const base = { question: "q?", answer: "yes", answer_type: "closed" as const, source: "t" };

describe("decodeImage", () => {
  it("decodes grayscale, RGBA and embedded images to RGB", async () => {
    const d = tmpDir();
    const gray = await sharp({ create: { width: 3, height: 2, channels: 3, background: { r: 50, g: 50, b: 50 } } }).grayscale().png().toBuffer();
    fs.writeFileSync(path.join(d, "g.png"), gray);
    const g = await decodeImage({ ...base, id: "g", image: { path: "g.png" } }, d);
    expect([g.width, g.height, g.data.length]).toEqual([3, 2, 18]);
    expect([...g.data.slice(0, 3)]).toEqual([50, 50, 50]);
    const rgba = await sharp({ create: { width: 2, height: 2, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).png().toBuffer();
    const t = await decodeImage({ ...base, id: "t", image: { bytes: rgba } }, d);
    expect([...t.data]).toEqual(new Array(12).fill(255));
    const e = await decodeImage({ ...base, id: "e", image: { bytes: await png(77) } }, d);
    expect(e.data[0]).toBe(77);
  });

  it("typed errors for missing, unreadable and escaping images", async () => {
    const d = tmpDir();
    fs.writeFileSync(path.join(d, "bad.png"), "nope");
    await expect(decodeImage({ ...base, id: "m", image: { path: "missing.png" } }, d)).rejects.toMatchObject({ code: "DATASET_MISSING_IMAGE" });
    await expect(decodeImage({ ...base, id: "b", image: { path: "bad.png" } }, d)).rejects.toMatchObject({ code: "DATASET_UNREADABLE_IMAGE", message: expect.stringContaining('sample "b"') });
    expect(() => imageInput({ ...base, id: "x", image: { path: "../x.png" } }, d)).toThrow(/escapes the dataset root/);
  });
});

describe("stats and export", () => {
  it("counts by split, answer type and modality", () => {
    const s: Sample[] = [
      { ...base, id: "1", image: { path: "a" }, split: "train", modality: "CT" },
      { ...base, id: "2", image: { path: "a" }, split: "test", answer_type: "open" },
    ];
    expect(countSamples(s, 3)).toEqual({ total: 2, by_split: { train: 1, test: 1 }, by_answer_type: { closed: 1, open: 1 }, by_modality: { CT: 1, "(none)": 1 }, skipped: 3 });
  });

  it("exports a self-contained JSONL (images copied or written from bytes) that loads back identically", async () => {
    const d = tmpDir();
    await writePng(path.join(d, "images/a.png"), 10);
    writeJson(path.join(d, "train.json"), [{ id: "r1", image: "images/a.png", question: "q?", reasoning: "because", answer: "Yes", modality: "CT" }]);
    const out = path.join(tmpDir(), "out", "samples.jsonl");
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const r = await exportSamples(loadDataset({ format: "rarl", path: path.join(d, "train.json") }), out);
    expect(r.written).toBe(1);
    const back = await loadDataset({ format: "jsonl", path: out }).toArray();
    const orig = await loadDataset({ format: "rarl", path: path.join(d, "train.json") }).toArray();
    expect(back).toEqual([{ ...orig[0], image: { path: "images/images/a.png" } }]);

    const p = tmpDir();
    writeParquet(path.join(p, "test.parquet"), [
      { name: "image", kind: "IMAGE", data: [{ bytes: await png(99), path: null }] },
      { name: "question", kind: "STRING", data: ["what?"] },
      { name: "answer", kind: "STRING", data: ["thing"] },
    ]);
    const out2 = path.join(tmpDir(), "s.jsonl");
    await exportSamples(loadDataset({ format: "pathvqa", path: p }), out2);
    const back2 = await loadDataset({ format: "jsonl", path: out2 }).toArray();
    expect(back2[0]).toMatchObject({ id: "pathvqa-test-1", image: { path: "images/pathvqa-test-1.png" }, source: "pathvqa", split: "test" });
    const img = await decodeImage(back2[0], path.dirname(out2));
    expect(img.data[0]).toBe(99);
  });
});
