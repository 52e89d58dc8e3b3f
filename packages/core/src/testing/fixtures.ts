import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Finds the shared fixtures folder (`../shared/fixtures` beside the repo root) by walking up from here. Test-only helper. */
export function fixturesDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const cand = path.join(dir, "shared", "fixtures");
    if (fs.existsSync(cand)) return cand;
    const up = path.dirname(dir);
    if (up === dir) throw new Error("shared/fixtures not found above the repo (expected ../shared beside the clone)");
    dir = up;
  }
}

/** Finds the repository root (the folder whose package.json declares workspaces) by walking up from here. Test-only helper. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, "package.json");
    if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, "utf8")).workspaces) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error("repo root not found (no package.json with workspaces above this file)");
    dir = up;
  }
}
