import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The repository's test fixtures folder (`<repo>/test-fixtures`: the tiny Qwen2-VL checkpoint with its reference
 * outputs, the tiny BERTScore encoder, the Qwen2-VL tokenizer files). Test and bench helper; the repository reads
 * nothing outside its own tree.
 */
export function fixturesDir(): string {
  const dir = path.join(repoRoot(), "test-fixtures");
  if (!fs.existsSync(path.join(dir, "qwen2vl-tiny", "config.json"))) {
    throw new Error(`${dir}/qwen2vl-tiny/config.json not found: the test fixtures are committed in test-fixtures/ (is the clone complete?)`);
  }
  return dir;
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
