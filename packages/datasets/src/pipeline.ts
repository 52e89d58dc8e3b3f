import fs from "node:fs";
import sharp from "sharp";
import { DatasetError, isSkippable } from "./errors";
import { realImagePath, resolveImage } from "./paths";
import { sampleProblem } from "./schema";
import type { RowRef } from "./fields";
import type { RawRow } from "./io";
import type { Sample, SkippedRow } from "./types";

/** One record turned into a sample, or the row-level error that prevented it. */
export interface Candidate {
  file: string;
  row: number;
  sample?: Sample;
  error?: DatasetError;
}

/** What a format loader hands to the pipeline. */
export interface FormatRows {
  /** Dataset root that image paths are relative to. */
  root: string;
  /** The records, in file order. */
  candidates: AsyncIterable<Candidate>;
  /** Called after iteration: rows left out on purpose by an option (e.g. SLAKE's non-English rows). */
  filtered?: () => number;
}

/** Runs `build` and turns a row-level DatasetError into a candidate error. */
export function tryBuild(file: string, row: number, build: () => Sample | Sample[]): Candidate[] {
  try {
    const s = build();
    return (Array.isArray(s) ? s : [s]).map((sample) => ({ file, row, sample }));
  } catch (e) {
    if (isSkippable(e)) return [{ file, row, error: e }];
    throw e;
  }
}

/** One raw row into candidates: its read error as a skippable candidate, or `build(at)` through tryBuild. */
export function rowCandidates(file: string, r: RawRow, build: (at: RowRef) => Sample | Sample[]): Candidate[] {
  if (r.error) return [{ file, row: r.row, error: r.error }];
  return tryBuild(file, r.row, () => build({ file, row: r.row }));
}

/** How much to check images while loading. */
export type VerifyImages = "none" | "exists" | "header";

/** Options of the pipeline shared by all formats. */
export interface PipelineOptions {
  /** "throw" (default): the first bad row throws its DatasetError. "skip": bad rows are recorded in `skipped` and left out. */
  onError?: "throw" | "skip";
  /** Called for every skipped row (in addition to `skipped`). */
  onSkip?: (s: SkippedRow) => void;
  /**
   * Image checks while loading. "none": none; "exists": image files must exist; "header" (default): files must
   * exist and every image (file or embedded bytes) must have a header sharp can read (catches unreadable images
   * without decoding pixels).
   */
  verifyImages?: VerifyImages;
  /** Stop after this many samples (default: no limit). */
  limit?: number;
}

/**
 * The loaded dataset: an async iterable of validated samples. Iterating runs the loader (streaming);
 * `skipped` and `filtered` are filled as it goes and reset at the start of each iteration.
 */
export class DatasetStream implements AsyncIterable<Sample> {
  /** Rows left out under `onError: "skip"`, with reasons. */
  readonly skipped: SkippedRow[] = [];
  /** Rows left out on purpose by an option (language filter...), counted after iteration. */
  filtered = 0;
  /** Samples yielded by the last iteration. */
  count = 0;
  private rootValue?: string;
  private readonly origins = new Map<string, { file: string; row: number }>();

  constructor(
    private readonly open: () => FormatRows,
    private readonly opts: PipelineOptions = {},
  ) {}

  /** The file and row a sample of the last iteration came from (for errors found later that must name the row). */
  originOf(id: string): { file: string; row: number } | undefined {
    return this.origins.get(id);
  }

  /** Dataset root (known once iteration has started). */
  get root(): string | undefined {
    return this.rootValue;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Sample> {
    this.skipped.length = 0;
    this.filtered = 0;
    this.count = 0;
    this.origins.clear();
    const { root, candidates, filtered } = this.open();
    this.rootValue = root;
    const seen = new Map<string, string>();
    const verify = this.opts.verifyImages ?? "header";
    const limit = this.opts.limit ?? Number.POSITIVE_INFINITY;
    if (limit <= 0) return;
    for await (const c of candidates) {
      let err = c.error;
      if (!err && c.sample) {
        err = await checkSample(c, root, seen, verify);
      }
      if (err) {
        if ((this.opts.onError ?? "throw") === "throw") throw err;
        const s: SkippedRow = { file: err.file ?? c.file, row: err.row ?? c.row, code: err.code, reason: err.message };
        this.skipped.push(s);
        this.opts.onSkip?.(s);
        continue;
      }
      this.count++;
      this.origins.set(c.sample!.id, { file: c.file, row: c.row });
      yield c.sample!;
      if (this.count >= limit) break;
    }
    this.filtered = filtered?.() ?? 0;
  }

  /** Collects all samples. */
  async toArray(): Promise<Sample[]> {
    const out: Sample[] = [];
    for await (const s of this) out.push(s);
    return out;
  }
}

async function checkSample(c: Candidate, root: string, seen: Map<string, string>, verify: VerifyImages): Promise<DatasetError | undefined> {
  const s = c.sample!;
  const at = { file: c.file, row: c.row };
  const problem = sampleProblem(s);
  if (problem) return new DatasetError(`sample does not match the schema: ${problem}`, { code: "DATASET_BAD_FIELD", ...at });
  const first = seen.get(s.id);
  if (first !== undefined) {
    return new DatasetError(`duplicated id ${JSON.stringify(s.id)} (first seen at ${first})`, {
      code: "DATASET_DUPLICATE_ID",
      ...at,
      details: { id: s.id, first },
    });
  }
  seen.set(s.id, `${c.file}, row ${c.row}`);
  if (verify === "none") return undefined;
  if ("path" in s.image) {
    let real: string | null;
    try {
      real = realImagePath(root, s.image.path, at);
    } catch (e) {
      if (e instanceof DatasetError) return e;
      throw e;
    }
    const abs = real ?? resolveImage(root, s.image.path);
    let ok = false;
    try {
      ok = real !== null && fs.statSync(real).isFile();
    } catch {
      ok = false;
    }
    if (!ok) {
      return new DatasetError(`image file not found: ${abs}`, { code: "DATASET_MISSING_IMAGE", ...at, details: { image: s.image.path } });
    }
    if (verify === "header") return headerProblem(abs, s.image.path, at);
    return undefined;
  }
  if (verify === "header") return headerProblem(s.image.bytes, "(embedded bytes)", at);
  return undefined;
}

async function headerProblem(
  input: string | Uint8Array,
  label: string,
  at: { file: string; row: number },
): Promise<DatasetError | undefined> {
  try {
    const m = await sharp(input).metadata();
    if (!m.width || !m.height) throw new Error("no image dimensions");
    return undefined;
  } catch (e) {
    return new DatasetError(`unreadable image ${label}: ${(e as Error).message}`, {
      code: "DATASET_UNREADABLE_IMAGE",
      ...at,
      details: { image: label },
      cause: e,
    });
  }
}
