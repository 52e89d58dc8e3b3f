import fs from "node:fs";
import path from "node:path";
import { DatasetError } from "../errors";
import { describe, type RowRef } from "../fields";
import { checkRelativeImagePath, joinRel } from "../paths";
import type { SampleImage } from "../types";

/** Base64 text of an embedded image in JSON exports looks like this. */
const B64 = /^[A-Za-z0-9+/=\s]+$/;

/**
 * Turns a published image field into a SampleImage: a path string, `{path}`, or the Hugging Face image
 * struct `{bytes, path}` (bytes win when present; base64 text is accepted for JSON files).
 * `dir` is prefixed to bare paths (formats whose image names live in an image folder).
 */
export function imageFrom(v: unknown, at: RowRef, field: string, dir = ""): SampleImage {
  if (typeof v === "string") {
    if (!v.trim()) throw new DatasetError(`field "${field}" is empty`, { code: "DATASET_MISSING_FIELD", ...at, details: { field } });
    return { path: checkRelativeImagePath(joinRel(dir, checkRelativeImagePath(v.trim(), at)), at) };
  }
  if (v && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array)) {
    const o = v as Record<string, unknown>;
    if (o.bytes instanceof Uint8Array && o.bytes.length > 0) return { bytes: o.bytes };
    if (typeof o.bytes === "string" && o.bytes.length > 0 && B64.test(o.bytes)) {
      return { bytes: new Uint8Array(Buffer.from(o.bytes, "base64")) };
    }
    if (typeof o.path === "string" && o.path.trim()) return { path: checkRelativeImagePath(joinRel(dir, checkRelativeImagePath(o.path.trim(), at)), at) };
    throw new DatasetError(`field "${field}" has neither image bytes nor a path`, {
      code: "DATASET_MISSING_FIELD",
      ...at,
      details: { field },
    });
  }
  if (v instanceof Uint8Array && v.length > 0) return { bytes: v };
  if (v === undefined || v === null) {
    throw new DatasetError(`missing required field "${field}"`, { code: "DATASET_MISSING_FIELD", ...at, details: { field } });
  }
  throw new DatasetError(`field "${field}" must be an image path or {bytes, path}, got ${describe(v)}`, {
    code: "DATASET_BAD_FIELD",
    ...at,
    details: { field },
  });
}

/** Split name from a file name such as `train-00000-of-00001.parquet`, `test.json`, `All_QA_Pairs_val.txt`. */
export function splitFromName(file: string): string | undefined {
  const b = path.basename(file).toLowerCase();
  const m = b.match(/(?:^|[^a-z])(train|training|validation|validate|valid|val|dev|test)(?:[^a-z]|$)/);
  if (!m) return undefined;
  const s = m[1];
  if (s === "training") return "train";
  if (s === "val" || s === "valid" || s === "validate" || s === "dev") return "validation";
  return s;
}

/** Files directly in (or, with `recursive`, under) `dir` matching `re`, sorted. */
export function listFiles(dir: string, re: RegExp, recursive = false): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && recursive) walk(p);
      else if (e.isFile() && re.test(e.name)) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

export function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** `path` must exist; returns true when it is a directory. */
export function statPath(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch (e) {
    throw new DatasetError("file or directory not found", { code: "DATASET_BAD_FILE", file: p, cause: e });
  }
}

/** The first of `candidates` that exists as a folder under root, else "". */
export function defaultImageDir(root: string, candidates: readonly string[]): string {
  for (const c of candidates) if (isDir(path.join(root, c))) return c;
  return "";
}

export function noFiles(p: string, what: string): DatasetError {
  return new DatasetError(`no ${what} found in this directory`, { code: "DATASET_BAD_FILE", file: p });
}

/** Strips `<think>`/`</think>` tags around a reasoning text. */
export function stripThink(s: string): string {
  return s
    .replace(/<\/?think>/gi, "")
    .trim();
}
