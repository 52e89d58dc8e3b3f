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
