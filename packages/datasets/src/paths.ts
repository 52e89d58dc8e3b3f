import fs from "node:fs";
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

/** Joins a checked relative image path onto the dataset root (text only: use {@link realImagePath} before reading the file). */
export function resolveImage(root: string, rel: string): string {
  return path.join(root, ...rel.split("/"));
}

/** True when `p` is `dir` or lies under it (both absolute and normalised). */
function isWithin(dir: string, p: string): boolean {
  const r = path.relative(dir, p);
  return r === "" || (!r.startsWith("..") && !path.isAbsolute(r));
}

/**
 * The real location of an image on disk: `rel` joined onto `root` with every symbolic link (of the file and of
 * the folders on the way) followed. Throws DATASET_PATH_ESCAPE when that real path lies outside the real dataset
 * root, e.g. `images/evil.png -> /etc/passwd`. Returns null when the file (or a link's target) does not exist;
 * callers report that as a missing image. Read images only through this path, never through the joined text.
 */
export function realImagePath(root: string, rel: string, at: Partial<RowRef> = {}): string | null {
  const joined = resolveImage(root, rel);
  let real: string;
  try {
    real = fs.realpathSync(joined);
  } catch {
    return null;
  }
  let realRoot: string;
  try {
    realRoot = fs.realpathSync(root);
  } catch {
    realRoot = path.resolve(root);
  }
  if (!isWithin(realRoot, real)) {
    throw new DatasetError(`image path ${JSON.stringify(rel)} resolves to ${real}, outside the dataset root ${realRoot} (through a symbolic link); images must stay inside the root`, {
      code: "DATASET_PATH_ESCAPE",
      ...at,
      details: { image: rel, realPath: real, root: realRoot },
    });
  }
  return real;
}

/** `dir/name` in posix form, skipping an empty dir. */
export function joinRel(dir: string, name: string): string {
  return dir ? `${dir.replace(/\\/g, "/").replace(/\/+$/, "")}/${name}` : name;
}
