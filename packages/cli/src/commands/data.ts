import path from "node:path";
import { withOutputLock } from "@rarl/core";
import {
  type ColumnMapping,
  DATASET_FORMATS,
  type DatasetFormat,
  datasetStats,
  exportSamples,
  type LoadOptions,
  loadDataset,
  type SkippedRow,
  type SynthSplit,
  type SynthStyle,
  synthesize,
} from "@rarl/datasets";
import { type Command, Option } from "commander";
import { checkOutputFile } from "./outputs";

function int(name: string, min = 1) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
}

function fraction(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!(n >= 0 && n < 1)) throw new Error(`--${name} must be a number in [0, 1), got "${v}"`);
    return n;
  };
}

const MAP_FIELDS = ["id", "image", "question", "answer", "reasoning", "answer_type", "choices", "modality", "split", "source", "extra"];

function collectMap(v: string, prev: ColumnMapping = {}): ColumnMapping {
  const m = v.match(/^([a-z_]+)=(.+)$/);
  if (!m || !MAP_FIELDS.includes(m[1])) throw new Error(`--map expects FIELD=COLUMN with FIELD one of ${MAP_FIELDS.join(", ")}, got "${v}"`);
  return { ...prev, [m[1]]: m[2] };
}

/**
 * Parses `--splits`: comma-separated `name:images[:family[:style]]`, family O | T | all, style
 * `lesion=<0-255>;gamma=<g>;grain=<0-1>` (any subset), e.g. `base:300:O,val:40:T,shifted:60:T:lesion=170;gamma=1.6`.
 */
export function parseSynthSplits(v: string): SynthSplit[] {
  return v.split(",").map((entry) => {
    const [name, images, family, style] = entry.trim().split(":");
    const n = Number(images);
    if (!name || !Number.isInteger(n) || n < 1) throw new Error(`--splits: "${entry}" must be name:images[:family[:style]] with images a positive integer`);
    const sp: SynthSplit = { name, images: n };
    if (family) {
      if (family !== "O" && family !== "T" && family !== "all") throw new Error(`--splits: "${entry}": family must be O, T or all, got "${family}"`);
      sp.family = family;
    }
    if (style) sp.style = parseStyle(style, `--splits "${entry}"`);
    return sp;
  });
}

function parseStyle(v: string, where: string): SynthStyle {
  const st: SynthStyle = {};
  for (const kv of v.split(";")) {
    const [k, x] = kv.split("=");
    const n = Number(x);
    if (!Number.isFinite(n)) throw new Error(`${where}: style "${kv}" must be key=number`);
    if (k === "lesion") st.lesionIntensity = n;
    else if (k === "gamma") st.gamma = n;
    else if (k === "grain") st.grain = n;
    else throw new Error(`${where}: unknown style key "${k}" (lesion, gamma, grain)`);
  }
  return st;
}

/** The loader options shared by `stats` and `export`. */
function withLoadOptions(cmd: Command, defaultOnError: "skip" | "throw"): Command {
  return cmd
    .addOption(new Option("--format <name>", "dataset format").choices([...DATASET_FORMATS]).makeOptionMandatory())
    .addOption(new Option("--on-error <mode>", "bad rows: skip (counted, reasons on stderr) or throw").choices(["skip", "throw"]).default(defaultOnError))
    .addOption(new Option("--verify-images <mode>", "image checks while loading").choices(["none", "exists", "header"]).default("header"))
    .option("--root <dir>", "dataset root that image paths are relative to (default: the data file's folder)")
    .option("--image-dir <dir>", "image folder under the root (silvar-med, vqa-rad, slake, vqa-med-2019)")
    .option("--lang <list>", 'SLAKE languages, comma-separated, or "all"', "en")
    .option("--map <field=column>", "column mapping for json/jsonl/csv (repeatable)", collectMap)
    .option("--source <name>", "source name for json/jsonl/csv rows without one")
    .option("--modality <name>", "modality for silvar-med records without one")
    .option("--limit <n>", "stop after n samples", int("limit"));
}

function loadOptions(format: string, p: string, o: Record<string, any>): LoadOptions {
  return {
    format: format as DatasetFormat,
    path: p,
    onError: o.onError,
    verifyImages: o.verifyImages,
    root: o.root,
    imageDir: o.imageDir,
    languages: o.lang === "all" ? "all" : String(o.lang).split(",").map((s: string) => s.trim()),
    mapping: o.map,
    source: o.source,
    modality: o.modality,
    limit: o.limit,
  };
}

function reportSkipped(skipped: SkippedRow[], filtered: number): void {
  const shown = skipped.slice(0, 20);
  for (const s of shown) process.stderr.write(`skipped: ${s.reason} [${s.code}]\n`);
  if (skipped.length > shown.length) process.stderr.write(`skipped: ... and ${skipped.length - shown.length} more\n`);
  if (skipped.length) process.stderr.write(`skipped ${skipped.length} row(s)\n`);
  if (filtered) process.stderr.write(`filtered ${filtered} row(s) by option (e.g. --lang)\n`);
}

function table(title: string, counts: Record<string, number>): string {
  const rows = Object.entries(counts).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  return `${title}:\n${rows.map(([k, v]) => `  ${k.padEnd(16)} ${v}`).join("\n")}\n`;
}

/** `rarl data stats|export|synth` (logic in @rarl/datasets). */
export function register(program: Command): void {
  const data = program.command("data").description("Dataset tools: stats, export to normalised JSONL, synthetic medical VQA");

  withLoadOptions(
    data
      .command("stats")
      .description("Counts by split, answer type and modality")
      .argument("<path>", "dataset file or folder")
      .option("--json", "print exactly one JSON object {total, by_split, by_answer_type, by_modality, skipped}"),
    "skip",
  ).action(async (p: string, o) => {
    const ds = loadDataset(loadOptions(o.format, p, o));
    const { stats, skippedRows, filtered } = await datasetStats(ds);
    reportSkipped(skippedRows, filtered);
    if (o.json) {
      process.stdout.write(`${JSON.stringify(stats)}\n`);
      return;
    }
    process.stdout.write(
      `${o.format} ${p}: ${stats.total} samples, ${stats.skipped} skipped\n` +
        table("by split", stats.by_split) +
        table("by answer type", stats.by_answer_type) +
        table("by modality", stats.by_modality),
    );
  });

  withLoadOptions(
    data
      .command("export")
      .description("Write the normalised samples as JSONL (images copied to images/ beside it); loads back with --format jsonl")
      .argument("<path>", "dataset file or folder")
      .requiredOption("--out <file>", "output samples.jsonl"),
    "throw",
  ).action(async (p: string, o) => {
    checkOutputFile("--out", o.out, [{ flag: "<path>", path: p }]);
    const ds = loadDataset(loadOptions(o.format, p, o));
    // One writer per export (a second one is refused naming this process's PID).
    const r = await withOutputLock(o.out, () => exportSamples(ds, o.out), { command: "rarl data export" });
    reportSkipped(r.skipped, ds.filtered);
    process.stderr.write(`wrote ${r.written} samples to ${path.resolve(o.out)}\n`);
  });

  data
    .command("synth")
    .description("Generate the synthetic medical VQA set (X-ray/CT/MRI-like images, lesion side and size; closed, open and reasoning questions)")
    .requiredOption("--out <dir>", "output folder (images/ + samples.jsonl in the RARL format)")
    .option("--n <n>", "number of samples (questions)", int("n"), 1000)
    .option("--seed <n>", "seed (same seed, byte-identical files)", int("seed", 0), 1)
    .option("--size <px>", "image side in pixels", int("size", 32), 112)
    .option("--questions-per-image <k>", "questions per image (1-5)", int("questions-per-image"), 2)
    .option("--test-fraction <f>", "fraction of images in the test split", fraction("test-fraction"), 0.2)
    .addOption(new Option("--family <f>", "question family: O (what the image shows), T (yes/no diagnostic), all").choices(["O", "T", "all"]).default("all"))
    .option("--style <s>", "image style, e.g. lesion=170;gamma=1.6;grain=0.3 (defaults lesion 235, gamma 1, grain 0.12)")
    .option("--splits <list>", "named splits with their own images: name:images[:family[:style]],... (replaces --n/--test-fraction)")
    .action(async (o) => {
      const r = await withOutputLock(
        o.out,
        () =>
          synthesize(o.out, {
            n: o.n,
            seed: o.seed,
            size: o.size,
            questionsPerImage: o.questionsPerImage,
            testFraction: o.testFraction,
            family: o.family,
            style: o.style ? parseStyle(o.style, "--style") : undefined,
            splits: o.splits ? parseSynthSplits(o.splits) : undefined,
          }),
        { command: "rarl data synth" },
      );
      const counts = new Map<string, number>();
      for (const s of r.samples) counts.set(s.split ?? "", (counts.get(s.split ?? "") ?? 0) + 1);
      process.stderr.write(`wrote ${r.samples.length} samples (${[...counts].map(([k, v]) => `${v} ${k}`).join(" / ")}) on ${r.images.length} images to ${path.resolve(o.out)}\n`);
    });
}
