import path from "node:path";
import { DatasetError } from "./errors";
import type { RowRef } from "./fields";

/**
 * Checks that an image path from a dataset is relative and stays inside the dataset root, and
 * returns it normalised with forward slashes (`imgs/a/b.jpg`). Absolute paths (POSIX `/x`,
 * Windows `C:\x`, UNC `\\x`) and paths that leave the root through `..` are rejected.
 */
export function checkRelativeImagePath(p: string, at: RowRef): string {
  const unified = p.replace(/\\/g, "/");
  if (unified.startsWith("/") || /^[A-Za-z]:/.test(unified) || path.isAbsolute(p)) {
    throw new DatasetError(`image path ${JSON.stringify(p)} is absolute; image paths must be relative to the dataset root`, {
      code: "DATASET_PATH_ESCAPE",
      ...at,
      details: { image: p },
    });
  }
  const norm = path.posix.normalize(unified);
  if (norm === ".." || norm.startsWith("../") || norm === "." || norm === "") {
    throw new DatasetError(`image path ${JSON.stringify(p)} escapes the dataset root`, {
      code: "DATASET_PATH_ESCAPE",
      ...at,
      details: { image: p },
    });
  }
  return norm;
}

/** Joins a checked relative image path onto the dataset root. */
export function resolveImage(root: string, rel: string): string {
  return path.join(root, ...rel.split("/"));
}

/** `dir/name` in posix form, skipping an empty dir. */
export function joinRel(dir: string, name: string): string {
  return dir ? `${dir.replace(/\\/g, "/").replace(/\/+$/, "")}/${name}` : name;
}
