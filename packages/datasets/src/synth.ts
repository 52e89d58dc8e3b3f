import fs from "node:fs";
import path from "node:path";
import { Rng, writeFileAtomic } from "@rarl/core";
import sharp from "sharp";
import { DatasetError } from "./errors";
import { stratifiedSplit } from "./split";
import type { Sample } from "./types";

/** Synthetic modalities, named as in the paper's reasoning set. */
export type SynthModality = "X-ray" | "CT" | "MRI";

/**
 * Question families, for experiments that hold a skill out: "O" asks what the image shows (modality, "is this an
 * MRI?", lesion side, lesion size, "is the lesion large?", describe the abnormality); "T" asks the yes/no diagnostic
 * questions (abnormal? healthy? a lesion in the left/right lung?). "all" mixes the original pool (without the
 * modality yes/no question).
 */
export type QuestionFamily = "O" | "T" | "all";

/** How the images are drawn; the defaults are the original style. */
export interface SynthStyle {
  /** Grey level of the lesion's centre (0-255). Default 235. Lower is fainter. */
  lesionIntensity?: number;
  /** Gamma applied to the rendered image (out = 255 (in/255)^gamma). Default 1 (none). */
  gamma?: number;
  /** Opacity of the fractal-noise grain layer, in [0, 1]. Default 0.12. */
  grain?: number;
}

/** A named split of its own images (no image is shared between splits). */
export interface SynthSplit {
  /** Split name written in `split` (e.g. "base", "val", "test-id"). */
  name: string;
  /** Number of images; each gets `questionsPerImage` questions. */
  images: number;
  /** Question family. Default the option `family`. */
  family?: QuestionFamily;
  /** Image style. Default the option `style`. */
  style?: SynthStyle;
}

/** Options of the synthetic medical VQA generator. */
export interface SynthOptions {
  /** Number of samples (questions). Default 1000. */
  n?: number;
  /** Seed; the same seed gives byte-identical files. Default 1. */
  seed?: number;
  /** Image side in pixels (square). Default 112. */
  size?: number;
  /** Questions asked per image (images are shared only within one split). Default 2. */
  questionsPerImage?: number;
  /** Fraction of images (with their questions) in the test split, stratified by modality. Default 0.2. */
  testFraction?: number;
  /** Probability that an image has a lesion. Default 0.5. */
  lesionProbability?: number;
  /** Relative frequency of each modality. Default the paper's 194 MRI / 143 CT / 529 X-ray. */
  modalityWeights?: Partial<Record<SynthModality, number>>;
  /** Question family of every image (see {@link QuestionFamily}). Default "all". */
  family?: QuestionFamily;
  /** Image style (see {@link SynthStyle}). Default the original style. */
  style?: SynthStyle;
  /**
   * Named splits, each with its own images, family and style, in this order (image ids run on across splits).
   * When given, `n` and `testFraction` are ignored. Default: the train/test split by `testFraction`.
   */
  splits?: SynthSplit[];
}

/** What one synthetic image shows (the ground truth every question is derived from). */
export interface SynthImageSpec {
  id: string;
  modality: SynthModality;
  lesion: boolean;
  /** Patient side of the lesion (drawn in the image's opposite half, radiological convention). */
  side?: "left" | "right";
  lesionSize?: "small" | "large";
  /** Lesion centre and radius in pixels. */
  cx?: number;
  cy?: number;
  r?: number;
}

const MODALITIES: SynthModality[] = ["MRI", "CT", "X-ray"];

const ANATOMY: Record<SynthModality, { organ: string; region: (side: string) => string; healthy: string; describe: string; clear: string }> = {
  "X-ray": {
    organ: "lung",
    region: (s) => `${s} lung`,
    healthy: "Are the lungs healthy?",
    describe: "This is a frontal chest X-ray: two dark lung fields on either side of the bright mediastinum and spine, crossed by faint rib shadows.",
    clear: "Both lung fields are uniformly dark with no focal bright opacity.",
  },
  CT: {
    organ: "lung",
    region: (s) => `${s} lung`,
    healthy: "Are the lungs healthy?",
    describe: "This is an axial chest CT slice: a grey soft-tissue body outline containing two dark lungs, the heart in front and a bright vertebra at the back.",
    clear: "Both lungs are uniformly dark with no focal bright nodule.",
  },
  MRI: {
    organ: "hemisphere",
    region: (s) => `${s} hemisphere`,
    healthy: "Is the brain healthy?",
    describe: "This is an axial brain MRI slice: a bright skull rim around grey brain tissue, with two dark ventricles beside the midline.",
    clear: "Both hemispheres show even grey signal with no focal bright lesion.",
  },
};

function g(v: number): string {
  const c = Math.max(0, Math.min(255, Math.round(v)));
  return `rgb(${c},${c},${c})`;
}

/** Lung/hemisphere regions (ellipses) in image coordinates: [cx, cy, rx, ry] for the image's left and right halves. */
function regions(m: SynthModality, S: number): Array<[number, number, number, number]> {
  if (m === "X-ray")
    return [
      [S * 0.3, S * 0.5, S * 0.15, S * 0.3],
      [S * 0.7, S * 0.5, S * 0.15, S * 0.3],
    ];
  if (m === "CT")
    return [
      [S * 0.31, S * 0.47, S * 0.13, S * 0.2],
      [S * 0.69, S * 0.47, S * 0.13, S * 0.2],
    ];
  return [
    [S * 0.33, S * 0.5, S * 0.14, S * 0.3],
    [S * 0.67, S * 0.5, S * 0.14, S * 0.3],
  ];
}

/** Draws the SVG of one synthetic image (pure; all randomness comes from `rng`). */
export function synthSvg(spec: SynthImageSpec, S: number, rng: Rng, style: SynthStyle = {}): string {
  const j = (a: number) => rng.uniform(-a, a);
  const parts: string[] = [];
  const [L, R] = regions(spec.modality, S);
  const f = (x: number) => x.toFixed(2);
  const ell = (cx: number, cy: number, rx: number, ry: number, fill: string, extra = "") =>
    `<ellipse cx="${f(cx)}" cy="${f(cy)}" rx="${f(rx)}" ry="${f(ry)}" fill="${fill}" ${extra}/>`;
  parts.push(`<rect width="${S}" height="${S}" fill="${g(8 + j(6))}"/>`);
  if (spec.modality === "X-ray") {
    parts.push(`<rect x="${f(S * 0.08)}" y="${f(S * 0.1)}" width="${f(S * 0.84)}" height="${f(S * 0.88)}" rx="${f(S * 0.18)}" fill="${g(95 + j(10))}"/>`);
    for (const [cx, cy, rx, ry] of [L, R]) parts.push(ell(cx, cy, rx * (1 + j(0.05)), ry * (1 + j(0.05)), g(38 + j(8))));
    parts.push(`<rect x="${f(S * 0.45)}" y="${f(S * 0.12)}" width="${f(S * 0.1)}" height="${f(S * 0.86)}" fill="${g(160 + j(10))}"/>`);
    parts.push(ell(S * 0.53, S * 0.62, S * 0.1, S * 0.12, g(150 + j(10))));
    for (let k = 0; k < 5; k++) {
      const y = S * (0.28 + 0.11 * k) + j(1);
      parts.push(`<path d="M ${f(S * 0.14)} ${f(y)} Q ${f(S * 0.3)} ${f(y - S * 0.08)} ${f(S * 0.45)} ${f(y)}" stroke="${g(80)}" stroke-width="${f(S * 0.015)}" fill="none"/>`);
      parts.push(`<path d="M ${f(S * 0.55)} ${f(y)} Q ${f(S * 0.7)} ${f(y - S * 0.08)} ${f(S * 0.86)} ${f(y)}" stroke="${g(80)}" stroke-width="${f(S * 0.015)}" fill="none"/>`);
    }
  } else if (spec.modality === "CT") {
    parts.push(ell(S * 0.5, S * 0.5, S * 0.45 * (1 + j(0.04)), S * 0.33 * (1 + j(0.04)), g(112 + j(10))));
    for (const [cx, cy, rx, ry] of [L, R]) parts.push(ell(cx, cy, rx * (1 + j(0.05)), ry * (1 + j(0.05)), g(22 + j(6))));
    parts.push(ell(S * 0.53, S * 0.4, S * 0.09, S * 0.08, g(135 + j(8))));
    parts.push(ell(S * 0.5, S * 0.75, S * 0.05, S * 0.045, g(225 + j(10))));
  } else {
    parts.push(ell(S * 0.5, S * 0.5, S * 0.36 * (1 + j(0.03)), S * 0.44 * (1 + j(0.03)), g(205 + j(10))));
    parts.push(ell(S * 0.5, S * 0.5, S * 0.33, S * 0.41, g(105 + j(10))));
    parts.push(ell(S * 0.45, S * 0.47, S * 0.03, S * 0.09, g(40 + j(6))));
    parts.push(ell(S * 0.55, S * 0.47, S * 0.03, S * 0.09, g(40 + j(6))));
    parts.push(`<line x1="${f(S * 0.5)}" y1="${f(S * 0.1)}" x2="${f(S * 0.5)}" y2="${f(S * 0.9)}" stroke="${g(70)}" stroke-width="${f(S * 0.01)}"/>`);
  }
  if (spec.lesion) {
    parts.push(`<circle cx="${f(spec.cx!)}" cy="${f(spec.cy!)}" r="${f(spec.r!)}" fill="${g((style.lesionIntensity ?? 235) + j(10))}" filter="url(#soft)"/>`);
  }
  const seed = 1 + rng.int(1000);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${S}" height="${S}" viewBox="0 0 ${S} ${S}">` +
    `<defs><filter id="soft" x="-50%" y="-50%" width="200%" height="200%"><feGaussianBlur stdDeviation="${f(S * 0.006)}"/></filter>` +
    `<filter id="grain"><feTurbulence type="fractalNoise" baseFrequency="0.9" numOctaves="1" seed="${seed}"/><feColorMatrix type="saturate" values="0"/></filter></defs>` +
    parts.join("") +
    `<rect width="${S}" height="${S}" filter="url(#grain)" opacity="${style.grain ?? 0.12}"/>` +
    "</svg>"
  );
}

/** Draws the ground truth of image `index` (its own forked Rng, so images do not depend on each other). */
export function synthSpec(index: number, rng: Rng, S: number, lesionProbability: number, weights: number[]): SynthImageSpec {
  const modality = MODALITIES[rng.categorical(weights)];
  const spec: SynthImageSpec = { id: `synth-${String(index + 1).padStart(6, "0")}`, modality, lesion: rng.random() < lesionProbability };
  if (spec.lesion) {
    spec.side = rng.random() < 0.5 ? "left" : "right";
    spec.lesionSize = rng.random() < 0.5 ? "small" : "large";
    const [L, R] = regions(modality, S);
    // radiological convention: the patient's left is on the image's right
    const [cx, cy, rx, ry] = spec.side === "left" ? R : L;
    spec.r = S * (spec.lesionSize === "large" ? 0.1 : 0.05);
    const mx = Math.max(0, rx - spec.r * 0.9);
    const my = Math.max(0, ry - spec.r * 0.9);
    spec.cx = cx + rng.uniform(-0.5, 0.5) * mx;
    spec.cy = cy + rng.uniform(-0.6, 0.6) * my;
  }
  return spec;
}

/** The reasoning text: what the image shows and how it leads to the finding. */
export function synthReasoning(spec: SynthImageSpec, S: number): string {
  const a = ANATOMY[spec.modality];
  if (!spec.lesion) return `${a.describe} ${a.clear} There is no lesion, so the image looks normal.`;
  const half = spec.side === "left" ? "right" : "left";
  const pct = Math.round(((2 * spec.r!) / S) * 100);
  return (
    `${a.describe} A well-defined, clearly brighter round blob, about ${pct}% of the image width across, lies in the ${half} half of the image, ` +
    `which is the patient's ${a.region(spec.side!)} by radiological convention. The other side is clear. ` +
    `This is a ${spec.lesionSize} lesion in the ${a.region(spec.side!)}, so the image is abnormal.`
  );
}

const yn = (b: boolean) => (b ? "Yes" : "No");

/** One synthetic question. `qtype` names the question, `family` its {@link QuestionFamily}. */
export interface SynthQuestion {
  kind: "closed" | "open" | "reasoning";
  qtype: string;
  family: "O" | "T";
  question: string;
  answer: string;
  answer_type: "closed" | "open";
}

/** The questions about one image (k of the family's pool, shuffled). */
export function synthQuestions(spec: SynthImageSpec, rng: Rng, k: number, family: QuestionFamily = "all"): SynthQuestion[] {
  const a = ANATOMY[spec.modality];
  const pool: SynthQuestion[] = [];
  const askSide = rng.random() < 0.5 ? "left" : "right";
  pool.push({ kind: "closed", qtype: "lesion-on-side", family: "T", question: `Is there a lesion in the ${a.region(askSide)}?`, answer: yn(spec.lesion && spec.side === askSide), answer_type: "closed" });
  pool.push({ kind: "closed", qtype: "abnormal", family: "T", question: "Does this image look abnormal?", answer: yn(spec.lesion), answer_type: "closed" });
  pool.push({ kind: "open", qtype: "modality", family: "O", question: "What imaging modality is this?", answer: spec.modality, answer_type: "open" });
  pool.push({ kind: "reasoning", qtype: "healthy", family: "T", question: a.healthy, answer: yn(!spec.lesion), answer_type: "closed" });
  pool.push({
    kind: "reasoning",
    qtype: "describe",
    family: "O",
    question: "Describe the abnormality in this image, if any.",
    answer: spec.lesion ? `${spec.lesionSize} lesion in the ${a.region(spec.side!)}` : "no abnormality",
    answer_type: "open",
  });
  if (spec.lesion) {
    pool.push({ kind: "open", qtype: "side", family: "O", question: "Which side is the lesion on?", answer: spec.side!, answer_type: "open" });
    pool.push({ kind: "open", qtype: "size", family: "O", question: "What is the size of the lesion?", answer: spec.lesionSize!, answer_type: "open" });
    pool.push({ kind: "closed", qtype: "large", family: "O", question: "Is the lesion large?", answer: yn(spec.lesionSize === "large"), answer_type: "closed" });
  }
  if (family === "O") {
    // a yes/no perception question, so a family-O model knows the yes/no answer form without the diagnostic questions
    const asked = MODALITIES[rng.int(MODALITIES.length)];
    pool.push({ kind: "closed", qtype: "is-modality", family: "O", question: `Is this an ${asked} image?`.replace("an CT", "a CT"), answer: yn(spec.modality === asked), answer_type: "closed" });
  }
  const fam = family === "all" ? pool : pool.filter((q) => q.family === family);
  return rng.shuffle(fam).slice(0, Math.min(k, fam.length));
}

/** Applies gamma to an 8-bit buffer in place (out = 255 (in/255)^gamma). */
function applyGamma(buf: Buffer, gamma: number): void {
  const lut = new Uint8Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.round(255 * (v / 255) ** gamma);
  for (let i = 0; i < buf.length; i++) buf[i] = lut[buf[i]];
}

function checkStyle(st: SynthStyle | undefined, where: string): void {
  if (!st) return;
  const bad = (f: string, v: unknown, want: string) => new DatasetError(`synth: ${where}style.${f} must be ${want}, got ${v}`, { code: "DATASET_BAD_OPTIONS", details: { field: `style.${f}` } });
  if (st.lesionIntensity !== undefined && !(st.lesionIntensity >= 0 && st.lesionIntensity <= 255)) throw bad("lesionIntensity", st.lesionIntensity, "in [0, 255]");
  if (st.gamma !== undefined && !(st.gamma > 0 && st.gamma <= 10)) throw bad("gamma", st.gamma, "in (0, 10]");
  if (st.grain !== undefined && !(st.grain >= 0 && st.grain <= 1)) throw bad("grain", st.grain, "in [0, 1]");
}

/** What {@link synthesize} wrote. */
export interface SynthResult {
  /** The samples, in file order (also written to samples.jsonl). */
  samples: Sample[];
  /** Ground truth per image. */
  images: SynthImageSpec[];
  /** Absolute path of samples.jsonl. */
  samplesFile: string;
}

/**
 * Writes a synthetic medical VQA set to `out`: `images/synth-XXXXXX.png` (grayscale PNGs drawn as SVG
 * and rendered by sharp) and `samples.jsonl` in the RARL format (id, image, question, reasoning, answer,
 * answer_type, modality, split, extra{kind, lesion, side, lesion_size, image_id}). Deterministic: the same
 * options give byte-identical files. Train and test share no image.
 */
export async function synthesize(out: string, opts: SynthOptions = {}): Promise<SynthResult> {
  const n = opts.n ?? 1000;
  const seed = opts.seed ?? 1;
  const S = opts.size ?? 112;
  const qpi = opts.questionsPerImage ?? 2;
  const testFraction = opts.testFraction ?? 0.2;
  const pLesion = opts.lesionProbability ?? 0.5;
  const w = opts.modalityWeights ?? { MRI: 194, CT: 143, "X-ray": 529 };
  const weights = MODALITIES.map((m) => w[m] ?? 0);
  if (!Number.isInteger(n) || n < 1) throw new DatasetError(`synth: n must be a positive integer, got ${n}`, { code: "DATASET_BAD_OPTIONS" });
  if (!Number.isInteger(S) || S < 32 || S > 2048) throw new DatasetError(`synth: size must be an integer in [32, 2048], got ${S}`, { code: "DATASET_BAD_OPTIONS" });
  if (!Number.isInteger(qpi) || qpi < 1 || qpi > 5) throw new DatasetError(`synth: questionsPerImage must be an integer in [1, 5], got ${qpi}`, { code: "DATASET_BAD_OPTIONS" });
  if (!(testFraction >= 0 && testFraction < 1)) throw new DatasetError(`synth: testFraction must be in [0, 1), got ${testFraction}`, { code: "DATASET_BAD_OPTIONS" });
  if (!(pLesion >= 0 && pLesion <= 1)) throw new DatasetError(`synth: lesionProbability must be in [0, 1], got ${pLesion}`, { code: "DATASET_BAD_OPTIONS" });
  if (!weights.some((x) => x > 0) || weights.some((x) => !(x >= 0))) throw new DatasetError("synth: modalityWeights must be non-negative with a positive sum", { code: "DATASET_BAD_OPTIONS" });

  const root = new Rng(seed);
  const specRng = root.fork();
  const drawRng = root.fork();
  const qRng = root.fork();
  const splitSeed = root.nextU32();
  checkStyle(opts.style, "");
  const splits = opts.splits;
  if (splits !== undefined) {
    if (splits.length === 0) throw new DatasetError("synth: splits must not be empty", { code: "DATASET_BAD_OPTIONS", details: { field: "splits" } });
    const names = new Set<string>();
    for (const sp of splits) {
      if (!/^[A-Za-z0-9_.-]+$/.test(sp.name) || names.has(sp.name))
        throw new DatasetError(`synth: split name "${sp.name}" must be unique and of letters, digits, _ . -`, { code: "DATASET_BAD_OPTIONS", details: { field: "splits" } });
      names.add(sp.name);
      if (!Number.isInteger(sp.images) || sp.images < 1) throw new DatasetError(`synth: split "${sp.name}": images must be a positive integer, got ${sp.images}`, { code: "DATASET_BAD_OPTIONS", details: { field: "splits" } });
      checkStyle(sp.style, `split "${sp.name}": `);
    }
  }
  const numImages = splits ? splits.reduce((a, sp) => a + sp.images, 0) : Math.ceil(n / qpi);
  const images: SynthImageSpec[] = [];
  for (let i = 0; i < numImages; i++) images.push(synthSpec(i, specRng.fork(), S, pLesion, weights));
  // per image: its split, family and style
  const splitOf: string[] = [];
  const familyOf: QuestionFamily[] = [];
  const styleOf: SynthStyle[] = [];
  if (splits) {
    for (const sp of splits)
      for (let i = 0; i < sp.images; i++) {
        splitOf.push(sp.name);
        familyOf.push(sp.family ?? opts.family ?? "all");
        styleOf.push(sp.style ?? opts.style ?? {});
      }
  } else {
    const { test } = stratifiedSplit(images, { seed: splitSeed, stratifyBy: (s) => s.modality, testFraction });
    const testIds = new Set(test.map((s) => s.id));
    for (const im of images) {
      splitOf.push(testIds.has(im.id) ? "test" : "train");
      familyOf.push(opts.family ?? "all");
      styleOf.push(opts.style ?? {});
    }
  }

  fs.mkdirSync(path.join(out, "images"), { recursive: true });
  const drawRngs = images.map(() => drawRng.fork());
  const batch = 8;
  for (let i = 0; i < images.length; i += batch) {
    await Promise.all(
      images.slice(i, i + batch).map(async (spec, k) => {
        const style = styleOf[i + k];
        const svg = synthSvg(spec, S, drawRngs[i + k], style);
        let png: Buffer;
        if ((style.gamma ?? 1) !== 1) {
          const raw = await sharp(Buffer.from(svg)).grayscale().raw().toBuffer({ resolveWithObject: true });
          applyGamma(raw.data, style.gamma!);
          png = await sharp(raw.data, { raw: { width: raw.info.width, height: raw.info.height, channels: raw.info.channels } })
            .grayscale()
            .png({ compressionLevel: 9, adaptiveFiltering: false })
            .toBuffer();
        } else png = await sharp(Buffer.from(svg)).grayscale().png({ compressionLevel: 9, adaptiveFiltering: false }).toBuffer();
        writeFileAtomic(path.join(out, "images", `${spec.id}.png`), png);
      }),
    );
  }
  const samples: Sample[] = [];
  images.forEach((spec, idx) => {
    const reasoning = synthReasoning(spec, S);
    const qs = synthQuestions(spec, qRng.fork(), splits ? qpi : Math.min(qpi, n - samples.length), familyOf[idx]);
    qs.forEach((q, k) => {
      const extra: Record<string, unknown> = { kind: q.kind, image_id: spec.id, lesion: spec.lesion, family: q.family, qtype: q.qtype };
      if (spec.lesion) {
        extra.side = spec.side;
        extra.lesion_size = spec.lesionSize;
      }
      samples.push({
        id: `${spec.id}-q${k + 1}`,
        image: { path: `images/${spec.id}.png` },
        question: q.question,
        answer: q.answer,
        reasoning,
        answer_type: q.answer_type,
        modality: spec.modality,
        source: "synth",
        split: splitOf[idx],
        extra,
      });
    });
  });
  const lines = samples.map((s) =>
    JSON.stringify({
      id: s.id,
      image: (s.image as { path: string }).path,
      question: s.question,
      reasoning: s.reasoning,
      answer: s.answer,
      answer_type: s.answer_type,
      modality: s.modality,
      split: s.split,
      source: s.source,
      extra: s.extra,
    }),
  );
  const samplesFile = path.resolve(out, "samples.jsonl");
  writeFileAtomic(samplesFile, `${lines.join("\n")}\n`);
  return { samples, images, samplesFile };
}
