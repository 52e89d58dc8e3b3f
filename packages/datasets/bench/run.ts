// Bench: samples/s for loading + image decoding + preprocessing on 1,000 synthetic samples.
// Run: cd packages/datasets && npm run bench   (writes bench/RESULTS.md)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parquetWriteBuffer } from "hyparquet-writer";
import sharp from "sharp";
import { writeFileAtomic } from "../../core/src/index";
import { decodeImage, loadDataset, synthesize } from "../src/index";

const N = Number(process.env.BENCH_N ?? 1000);
const SIZE = 112;
const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-ds-bench-"));

type Processor = { name: string; run: (img: { width: number; height: number; data: Uint8Array }) => unknown };

async function processors(): Promise<Processor[]> {
  const p = path.join(here, "../../model/src/qwen2_vl/image_processor.ts");
  if (fs.existsSync(p)) {
    const m = await import("../../model/src/qwen2_vl/image_processor");
    const def = new m.Qwen2VLImageProcessor();
    const up = new m.Qwen2VLImageProcessor({ minPixels: 224 * 224 });
    return [
      { name: `@rarl/model Qwen2VLImageProcessor, default config (${SIZE}x${SIZE} -> ${def.targetSize(SIZE, SIZE).join("x")}, rescale + CLIP normalise + patchify)`, run: (img) => def.processRgb(img) },
      { name: `@rarl/model Qwen2VLImageProcessor, min_pixels 224*224 (${SIZE}x${SIZE} -> ${up.targetSize(SIZE, SIZE).join("x")}: Pillow-exact bicubic resize + normalise + patchify)`, run: (img) => up.processRgb(img) },
    ];
  }
  return [
    {
      name: "sharp resize to 224x224 (model image processor not found)",
      run: (img) => sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).resize(224, 224, { kernel: "cubic" }).raw().toBuffer(),
    },
  ];
}

async function time<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
}

const rows: Array<[string, number, number]> = [];
function record(name: string, n: number, s: number) {
  rows.push([name, n, s]);
  console.log(`${name}: ${n} samples in ${s.toFixed(2)} s = ${(n / s).toFixed(0)} samples/s`);
}

const synthDir = path.join(tmp, "synth");
const [res, tSynth] = await time(() => synthesize(synthDir, { n: N, seed: 1, size: SIZE, questionsPerImage: 1 }));
record(`synthesize (SVG -> PNG with sharp, ${SIZE}x${SIZE}, 1 question per image)`, res.samples.length, tSynth);

const load = (verifyImages: "none" | "exists" | "header") => loadDataset({ format: "rarl", path: path.join(synthDir, "samples.jsonl"), verifyImages });
for (const v of ["none", "exists", "header"] as const) {
  const [samples, t] = await time(() => load(v).toArray());
  record(`load samples.jsonl (verifyImages "${v}")`, samples.length, t);
}
{
  const [n, t] = await time(async () => {
    let k = 0;
    for await (const s of load("exists")) {
      await decodeImage(s, synthDir);
      k++;
    }
    return k;
  });
  record("load + decodeImage (sharp, PNG -> RGB)", n, t);
}
for (const p of await processors()) {
  const [n, t] = await time(async () => {
    let k = 0;
    for await (const s of load("exists")) {
      p.run(await decodeImage(s, synthDir));
      k++;
    }
    return k;
  });
  record(`load + decode + ${p.name}`, n, t);
}

// the same images embedded in a Hugging Face-layout parquet file (struct<bytes,path>, snappy)
const pq = path.join(tmp, "train-00000-of-00001.parquet");
{
  const images = res.samples.map((s) => ({ bytes: fs.readFileSync(path.join(synthDir, (s.image as { path: string }).path)), path: null }));
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "image", data: images as any },
      { name: "question", data: res.samples.map((s) => s.question) },
      { name: "answer", data: res.samples.map((s) => s.answer) },
    ],
    schema: [
      { name: "root", num_children: 3 },
      { name: "image", repetition_type: "OPTIONAL", num_children: 2 },
      { name: "bytes", type: "BYTE_ARRAY", repetition_type: "OPTIONAL" },
      { name: "path", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "question", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
      { name: "answer", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" },
    ] as any,
    rowGroupSize: 250,
  });
  fs.writeFileSync(pq, new Uint8Array(buf));
  const [n1, t1] = await time(() => loadDataset({ format: "pathvqa", path: pq, verifyImages: "none" }).toArray().then((x) => x.length));
  record("load parquet with embedded images (hyparquet, snappy, 4 row groups)", n1, t1);
  const [n2, t2] = await time(async () => {
    let k = 0;
    for await (const s of loadDataset({ format: "pathvqa", path: pq, verifyImages: "none" })) {
      await decodeImage(s, tmp);
      k++;
    }
    return k;
  });
  record("load parquet + decodeImage", n2, t2);
}

const cpus = os.cpus();
const md = [
  "# @rarl/datasets bench",
  "",
  `- date: ${new Date().toISOString()}`,
  `- machine: ${cpus[0]?.model ?? "?"} x${cpus.length} logical CPUs, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.platform()} ${os.arch()}`,
  `- node ${process.version}, sharp ${(sharp as any).versions?.sharp ?? "?"} (libvips ${(sharp as any).versions?.vips ?? "?"}); no tfjs backend involved (sharp + JS)`,
  `- config: ${N} synthetic samples (seed 1, ${SIZE}x${SIZE} grayscale PNG, 1 question per image), single process, sequential per sample`,
  "- command: `cd packages/datasets && npm run bench`",
  "- preprocessing = decode to RGB (sharp) + the model's image processor; the default Qwen2-VL config keeps 112x112 (already a multiple of 28 and above min_pixels), so a second row forces a 224x224 resize",
  "",
  "| step | samples | seconds | samples/s |",
  "| --- | ---: | ---: | ---: |",
  ...rows.map(([n, k, s]) => `| ${n} | ${k} | ${s.toFixed(2)} | ${(k / s).toFixed(0)} |`),
  "",
  "The machine is shared by other jobs, so expect run-to-run noise of a few tens of percent.",
  "",
];
writeFileAtomic(path.join(here, "RESULTS.md"), md.join("\n"));
fs.rmSync(tmp, { recursive: true, force: true });
console.log(`wrote ${path.join(here, "RESULTS.md")}`);
