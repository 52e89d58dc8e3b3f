// The paper's split of the Silvar-Med reasoning set: 866 questions -> 716 train / 150 test, stratified by modality
// with the published per-modality test counts (32 MRI, 21 CT, 97 X-ray). Writes one RARL-format JSONL with a
// `split` column, image paths relative to its folder.
//
//   tsx examples/medical-rarl/make-split.ts --out data/silvar-med/rarl-split.jsonl \
//     silvar-med:data/silvar-med/mri.json:MRI silvar-med:data/silvar-med/ct.json:CT silvar-med:data/silvar-med/xray.json:X-ray
//
// Each input is FORMAT:PATH[:MODALITY] (MODALITY for files whose records carry none). --seed N (default 0).
import fs from "node:fs";
import path from "node:path";
import { type DatasetFormat, loadDataset, paperSplit, type Sample } from "@rarl/datasets";

const args = process.argv.slice(2);
const flag = (name: string, dflt?: string) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const out = path.resolve(flag("--out", "data/silvar-med/rarl-split.jsonl") as string);
const seed = Number(flag("--seed", "0"));
if (args.length === 0) {
  process.stderr.write("usage: tsx make-split.ts --out FILE FORMAT:PATH[:MODALITY] ...\n");
  process.exit(2);
}
const samples: Array<Sample & { abs?: string }> = [];
for (const spec of args) {
  const [format, file, modality] = spec.split(":");
  const ds = loadDataset({ format: format as DatasetFormat, path: path.resolve(file), modality, onError: "skip" });
  // ids restart per file (e.g. silvar-med-<row>): prefix them with the file name when there are several inputs
  const prefix = args.length > 1 ? `${path.parse(file).name}-` : "";
  for await (const s of ds) samples.push({ ...s, id: prefix + s.id, abs: "path" in s.image ? path.resolve(ds.root ?? path.dirname(path.resolve(file)), s.image.path) : undefined });
  for (const k of ds.skipped) process.stderr.write(`skipped ${k.file}:${k.row}: ${k.reason}\n`);
}
const missing = samples.filter((s) => !s.modality).length;
if (missing) throw new Error(`${missing} sample(s) have no modality: give it per file as FORMAT:PATH:MODALITY`);
const { train, test } = paperSplit(samples, seed);
const dir = path.dirname(out);
const row = (s: Sample & { abs?: string }, split: string) => {
  const { abs, image, ...rest } = s;
  return JSON.stringify({ ...rest, image: abs ? path.relative(dir, abs) : image, split });
};
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(`${out}.tmp`, `${[...train.map((s) => row(s, "train")), ...test.map((s) => row(s, "test"))].join("\n")}\n`);
fs.renameSync(`${out}.tmp`, out);
process.stderr.write(`${out}: ${train.length} train, ${test.length} test\n`);
