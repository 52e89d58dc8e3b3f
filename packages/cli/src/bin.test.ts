import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const cliDir = fileURLToPath(new URL("..", import.meta.url));
const pkg = JSON.parse(fs.readFileSync(path.join(cliDir, "package.json"), "utf8"));
const binRel: string = pkg.bin.rarl;
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-bin-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A copy of the package as a fresh clone has it: package.json and the committed files, no dist/. */
function freshCopy(into: string): string {
  const dir = path.join(into, "packages", "cli");
  fs.mkdirSync(dir, { recursive: true });
  const { dependencies: _d, devDependencies: _dd, scripts: _s, ...bare } = pkg;
  fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify(bare, null, 2));
  const target = path.join(cliDir, binRel);
  if (fs.existsSync(target) && !path.relative(cliDir, target).startsWith("dist")) {
    fs.mkdirSync(path.dirname(path.join(dir, binRel)), { recursive: true });
    fs.copyFileSync(target, path.join(dir, binRel));
  }
  return dir;
}

describe("the rarl bin on a fresh clone (issue 16 item 1)", () => {
  it("is a committed file, not a build output, and is executable", () => {
    const target = path.join(cliDir, binRel);
    expect(path.relative(cliDir, target).split(path.sep)[0]).not.toBe("dist");
    expect(fs.existsSync(target)).toBe(true);
    expect(fs.statSync(target).mode & 0o111).not.toBe(0);
    expect(fs.readFileSync(target, "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true);
    const git = spawnSync("git", ["ls-files", "--error-unmatch", binRel], { cwd: cliDir, encoding: "utf8" });
    if (git.error === undefined && !/not a git repository/.test(git.stderr)) expect(git.status, git.stderr).toBe(0);
  });

  it("npm links node_modules/.bin/rarl at install time, before any build", () => {
    const root = path.join(tmp, "clone");
    freshCopy(root);
    fs.writeFileSync(path.join(root, "package.json"), JSON.stringify({ name: "clone", private: true, workspaces: ["packages/*"] }));
    const r = spawnSync("npm", ["install", "--offline", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: root, encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const link = path.join(root, "node_modules", ".bin", "rarl");
    expect(fs.existsSync(link)).toBe(true);
    // not built yet: the launcher says what to do
    const run = spawnSync(link, ["--help"], { cwd: root, encoding: "utf8" });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/run `npm run build` first/);
    // once dist/bin.js exists, the launcher runs it with the arguments
    const dist = path.join(root, "packages", "cli", "dist");
    fs.mkdirSync(dist);
    fs.writeFileSync(path.join(dist, "bin.js"), 'process.stdout.write("built cli " + process.argv.slice(2).join(" ") + "\\n");\n');
    fs.writeFileSync(path.join(dist, "package.json"), '{"type": "module"}');
    const run2 = spawnSync(link, ["--help"], { cwd: root, encoding: "utf8" });
    expect(run2.stderr).toBe("");
    expect(run2.stdout).toBe("built cli --help\n");
    expect(run2.status).toBe(0);
  });

  // The build is not a prerequisite of `npm test`; tools/pack-check.mjs checks the built bin on a fresh clone either way.
  it.runIf(fs.existsSync(path.join(cliDir, "dist", "bin.js")))("the launcher runs the real built CLI (only where this checkout is built)", () => {
    const r = spawnSync(process.execPath, [path.join(cliDir, binRel), "--help"], { encoding: "utf8", env: { ...process.env, RARL_LOG_LEVEL: "warn" } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Usage: rarl/);
  });
});
