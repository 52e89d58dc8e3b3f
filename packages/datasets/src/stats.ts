import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "@rarl/core";
import sharp from "sharp";
import type { DatasetStream } from "./pipeline";
import { DatasetError } from "./errors";
import { realImagePath, resolveImage } from "./paths";
import type { Sample, SkippedRow } from "./types";

/** Counts of a dataset, as `rarl data stats --json` prints them. */
export interface DatasetStats {
  total: number;
  by_split: Record<string, number>;
  by_answer_type: Record<string, number>;
  by_modality: Record<string, number>;
  /** Rows skipped under onError "skip". */
  skipped: number;
}

function bump(o: Record<string, number>, k: string | undefined) {
  const key = k ?? "(none)";
  o[key] = (o[key] ?? 0) + 1;
}

/** Pure: counts samples by split, answer type and modality (missing values count as "(none)"). */
export function countSamples(samples: Iterable<Sample>, skipped = 0): DatasetStats {
  const st: DatasetStats = { total: 0, by_split: {}, by_answer_type: {}, by_modality: {}, skipped };
  for (const s of samples) {
    st.total++;
    bump(st.by_split, s.split);
    bump(st.by_answer_type, s.answer_type);
    bump(st.by_modality, s.modality);
  }
  return st;
}

/** Streams a dataset and counts it; also returns the skipped rows and the filtered count. */
export async function datasetStats(ds: DatasetStream): Promise<{ stats: DatasetStats; skippedRows: SkippedRow[]; filtered: number }> {
  const st = countSamples([]);
  for await (const s of ds) {
    st.total++;
    bump(st.by_split, s.split);
    bump(st.by_answer_type, s.answer_type);
    bump(st.by_modality, s.modality);
  }
  st.skipped = ds.skipped.length;
  return { stats: st, skippedRows: [...ds.skipped], filtered: ds.filtered };
}

/**
 * Makes `dst` safe to write in the export folder (call before creating its folders): its folder must really lie
 * inside `outDir` (no linked folder that leads elsewhere), and a symbolic link already at `dst` is removed rather
 * than written through.
 */
function writableInside(outDir: string, dst: string, id: string): void {
  fs.mkdirSync(outDir, { recursive: true });
  const realOut = fs.realpathSync(outDir);
  // the deepest folder of dst that exists already (the ones below it are created inside it)
  let dir = path.dirname(dst);
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const realDir = fs.realpathSync(dir);
  const r = path.relative(realOut, realDir);
  if (r.startsWith("..") || path.isAbsolute(r)) {
    throw new DatasetError(`sample ${JSON.stringify(id)}: export path ${dst} leads to ${realDir}, outside the export folder ${realOut} (through a symbolic link)`, {
      code: "DATASET_PATH_ESCAPE",
      details: { id, image: dst },
    });
  }
  try {
    if (fs.lstatSync(dst).isSymbolicLink()) fs.unlinkSync(dst);
  } catch {
    /* absent */
  }
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 120);
}

/**
 * Writes the normalised samples as JSONL (one {@link Sample} per line, loadable with format "jsonl"),
 * atomically. Images are copied beside it under `images/` so the export is self-contained:
 * path images keep their relative path, embedded bytes are written as `images/<id>.<ext>`
 * (ext from sharp's format detection). Returns the number of samples written.
 */
export async function exportSamples(ds: DatasetStream, outFile: string): Promise<{ written: number; skipped: SkippedRow[] }> {
  const outDir = path.dirname(path.resolve(outFile));
  const lines: string[] = [];
  const usedNames = new Set<string>();
  for await (const s of ds) {
    let rel: string;
    if ("path" in s.image) {
      rel = `images/${s.image.path}`;
      // Follow links and refuse images outside the root whatever verifyImages was (a link to /etc/passwd is not copied).
      const src = realImagePath(ds.root!, s.image.path, { file: `sample ${s.id}` });
      if (src === null) {
        throw new DatasetError(`sample ${JSON.stringify(s.id)}: image file not found: ${resolveImage(ds.root!, s.image.path)}`, {
          code: "DATASET_MISSING_IMAGE",
          details: { id: s.id, image: s.image.path },
        });
      }
      const dst = resolveImage(outDir, rel);
      let same = false;
      try {
        same = fs.realpathSync(dst) === src; // exporting next to the data: the image is already in place
      } catch {
        same = false;
      }
      if (!same) {
        writableInside(outDir, dst, s.id);
        fs.mkdirSync(path.dirname(dst), { recursive: true });
        fs.copyFileSync(src, dst);
      }
    } else {
      let ext = "bin";
      try {
        ext = (await sharp(s.image.bytes).metadata()).format ?? "bin";
      } catch {
        /* verifyImages "none": keep raw bytes */
      }
      let name = `${safeName(s.id)}.${ext === "jpeg" ? "jpg" : ext}`;
      for (let k = 2; usedNames.has(name); k++) name = `${safeName(s.id)}-${k}.${ext}`;
      usedNames.add(name);
      rel = `images/${name}`;
      const dst = resolveImage(outDir, rel);
      writableInside(outDir, dst, s.id);
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      writeFileAtomic(dst, s.image.bytes);
    }
    lines.push(JSON.stringify({ ...s, image: { path: rel } }));
  }
  writeFileAtomic(outFile, lines.length ? `${lines.join("\n")}\n` : "");
  return { written: lines.length, skipped: [...ds.skipped] };
}
