// Test helpers (not exported): a 2B-shaped Qwen2-VL folder whose weights file is a correct safetensors header over a
// sparse file (no 4.4 GB written), and small data files in the published layouts the examples' configs point at.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expectedWeights, parseQwen2VLConfig, QWEN2_VL_2B_INSTRUCT_CONFIG } from "@rarl/model";
import { png, writeJson, writeParquet, writePng, writeText } from "../../../datasets/src/test-helpers";

export const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const FIXTURES = path.join(REPO, "test-fixtures");

/** config.json of Qwen/Qwen2-VL-2B-Instruct as published on the hub (one definition, in @rarl/model). */
export { QWEN2_VL_2B_INSTRUCT_CONFIG };

/**
 * Writes a Qwen2-VL folder for `config`: config.json, a BF16 model.safetensors whose header lists every tensor with
 * its shape (the data region is a hole: the file is truncated to its full size without writing it), and the real
 * Qwen2-VL tokenizer/processor files from the tiny fixture in test-fixtures/. `edit` changes the tensor list (incompatible
 * checkpoints). Returns the number of parameters.
 */
export function writeSparseQwen2VL(dir: string, config: object = QWEN2_VL_2B_INSTRUCT_CONFIG, edit?: (shapes: Map<string, number[]>) => void): number {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  const shapes = expectedWeights(parseQwen2VLConfig(config));
  edit?.(shapes);
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let off = 0;
  let params = 0;
  for (const name of [...shapes.keys()].sort()) {
    const shape = shapes.get(name) as number[];
    const n = shape.reduce((a, b) => a * b, 1);
    params += n;
    header[name] = { dtype: "BF16", shape, data_offsets: [off, off + 2 * n] };
    off += 2 * n;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const file = path.join(dir, "model.safetensors");
  fs.writeFileSync(file, Buffer.concat([len, json]));
  fs.truncateSync(file, 8 + json.length + off);
  for (const f of ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "chat_template.json", "generation_config.json"]) {
    fs.copyFileSync(path.join(FIXTURES, "qwen2vl-tiny", f), path.join(dir, f));
  }
  return params;
}

/** A BERTScore encoder folder (the tiny fixture in test-fixtures/: the dry run checks its files, it does not load it). */
export function writeEncoder(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(path.join(FIXTURES, "bertscore-tiny"))) {
    const src = path.join(FIXTURES, "bertscore-tiny", f);
    if (fs.statSync(src).isFile()) fs.copyFileSync(src, path.join(dir, f));
  }
}

/**
 * The medical-rarl data layout (examples/medical-rarl/README.md) with a few rows each: the RARL split file
 * (4 train, 2 test, 1 bad row), VQA-RAD, SLAKE, VQA-Med 2019 and Path-VQA in their published layouts.
 */
export async function writeMedicalData(data: string): Promise<void> {
  const silvar = path.join(data, "silvar-med");
  for (const f of ["xray1.png", "ct1.png", "mri1.png"]) await writePng(path.join(silvar, "images", f), 120);
  const row = (i: number, image: string, modality: string, split: string) =>
    JSON.stringify({
      id: `silvar-${i}`,
      image: `images/${image}`,
      question: "Is there an abnormality in the image?",
      reasoning: "Yes, there is an opacity in the right lower lobe consistent with pneumonia.",
      answer: "Yes",
      modality,
      split,
    });
  const rows = [row(1, "xray1.png", "X-ray", "train"), row(2, "ct1.png", "CT", "train"), row(3, "mri1.png", "MRI", "train"), row(4, "xray1.png", "X-ray", "train")];
  rows.push(row(5, "ct1.png", "CT", "test"), row(6, "mri1.png", "MRI", "test"));
  rows.push(JSON.stringify({ id: "silvar-7", image: "images/missing.png", question: "Is it normal?", answer: "No", split: "train" }));
  writeText(path.join(silvar, "rarl-split.jsonl"), `${rows.join("\n")}\n`);

  const rad = path.join(data, "vqa-rad");
  await writePng(path.join(rad, "VQA_RAD Image Folder", "synpic54610.jpg"));
  writeJson(path.join(rad, "VQA_RAD Dataset Public.json"), [
    { qid: 0, phrase_type: "freeform", image_name: "synpic54610.jpg", image_organ: "HEAD", question: "Are regions of the brain infarcted?", question_type: "PRES", answer: "Yes", answer_type: "CLOSED" },
    { qid: 1, phrase_type: "test_freeform", image_name: "synpic54610.jpg", image_organ: "HEAD", question: "Is this an MRI?", question_type: "MODALITY", answer: "Yes", answer_type: "CLOSED" },
  ]);

  const slake = path.join(data, "Slake1.0");
  await writePng(path.join(slake, "imgs/xmlab1/source.jpg"));
  const rec = (qid: number) => ({ img_id: 1, img_name: "xmlab1/source.jpg", question: "Which organ is shown?", answer: "Liver", q_lang: "en", location: "Abdomen", modality: "CT", answer_type: "OPEN", content_type: "Organ", qid });
  writeJson(path.join(slake, "train.json"), [rec(1)]);
  writeJson(path.join(slake, "validate.json"), [rec(2)]);
  writeJson(path.join(slake, "test.json"), [rec(3), rec(4)]);

  const med = path.join(data, "vqa-med-2019");
  await writePng(path.join(med, "VQAMed2019_Test_Images", "synpic100.jpg"));
  writeText(path.join(med, "VQAMed2019_Test_Questions_w_Ref_Answers.txt"), "synpic100|modality|what kind of image is this?|ct w/contrast (iv)\nsynpic100|abnormality|what is abnormal?|meningioma#meningiomas\n");

  const img = await png(90);
  writeParquet(path.join(data, "path-vqa", "test-00000-of-00001.parquet"), [
    { name: "image", kind: "IMAGE", data: [{ bytes: img, path: null }, { bytes: img, path: null }] },
    { name: "question", kind: "STRING", data: ["is there epithelium?", "what is present?"] },
    { name: "answer", kind: "STRING", data: ["yes", "epithelium"] },
  ]);
}

/** CV-Bench-format files: a training JSONL with `n` questions (image paths) and a CV-Bench test parquet. */
export async function writeCvBenchData(data: string, n = 12): Promise<void> {
  await writePng(path.join(data, "train/img/2D/count/ade20k_1.png"));
  const tasks = [
    ["2D", "Count", "ADE20K"],
    ["2D", "Relation", "COCO"],
    ["3D", "Depth", "Omni3D"],
    ["3D", "Distance", "Omni3D"],
  ];
  const lines = Array.from({ length: n }, (_, i) => {
    const [type, task, source] = tasks[i % 4];
    return JSON.stringify({ idx: i, type, task, image: "img/2D/count/ade20k_1.png", question: "How many chairs are in the image?", choices: ["1", "2", "3"], answer: "(B)", prompt: "", source });
  });
  writeText(path.join(data, "train/train.jsonl"), `${lines.join("\n")}\n`);
  const img = await png(60);
  const m = 4;
  writeParquet(path.join(data, "cv-bench/test_2d.parquet"), [
    { name: "idx", kind: "INT64", data: Array.from({ length: m }, (_, i) => BigInt(i)) },
    { name: "type", kind: "STRING", data: Array.from({ length: m }, () => "2D") },
    { name: "task", kind: "STRING", data: Array.from({ length: m }, (_, i) => (i % 2 ? "Relation" : "Count")) },
    { name: "image", kind: "IMAGE", data: Array.from({ length: m }, () => ({ bytes: img, path: null })) },
    { name: "question", kind: "STRING", data: Array.from({ length: m }, () => "How many?") },
    { name: "choices", kind: "STRING_LIST", data: Array.from({ length: m }, () => ["1", "2"]) },
    { name: "answer", kind: "STRING", data: Array.from({ length: m }, () => "(A)") },
    { name: "prompt", kind: "STRING", data: Array.from({ length: m }, () => "") },
    { name: "source", kind: "STRING", data: Array.from({ length: m }, (_, i) => (i % 2 ? "COCO" : "ADE20K")) },
  ]);
}

/** Copies an example config into `dir` (so its relative paths point into the layout written there). */
export function copyExampleConfig(example: string, file: string, dir: string): string {
  const dst = path.join(dir, file);
  fs.mkdirSync(dir, { recursive: true });
  const c = JSON.parse(fs.readFileSync(path.join(REPO, "examples", example, file), "utf8"));
  c.$schema = path.join(REPO, "packages/cli/schema/rarl.config.schema.json");
  fs.writeFileSync(dst, JSON.stringify(c, null, 2));
  return dst;
}
