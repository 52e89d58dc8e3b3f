#!/usr/bin/env node
// Root benchmark runner (`npm run bench`): runs `npm run bench --if-present` in every package, one after another,
// then collects each packages/<pkg>/bench/RESULTS.md into BENCHMARKS.md (written atomically), headed by the machine
// (lscpu model, cores, RAM), the Node version and the date.
//   node tools/bench.mjs                 run every package's bench, then collect
//   node tools/bench.mjs core model      run only these packages' benches (BENCHMARKS.md still collects all)
//   node tools/bench.mjs --collect-only  do not run anything, only rebuild BENCHMARKS.md from the RESULTS.md files
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const collectOnly = args.includes("--collect-only");
const only = args.filter((a) => !a.startsWith("--"));

function machine() {
  let cpu = os.cpus()[0]?.model ?? "unknown";
  try {
    const m = execFileSync("lscpu", { encoding: "utf8" }).match(/^Model name:\s*(.+)$/m);
    if (m) cpu = m[1].trim();
  } catch {
    /* lscpu missing */
  }
  return { cpu, cores: os.cpus().length, ramGiB: (os.totalmem() / 2 ** 30).toFixed(1) };
}

function writeAtomic(file, text) {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

const pkgDir = path.join(root, "packages");
const packages = fs
  .readdirSync(pkgDir)
  .filter((d) => fs.existsSync(path.join(pkgDir, d, "package.json")))
  .sort((a, b) => (a === "core" ? -1 : b === "core" ? 1 : a.localeCompare(b)));

const status = new Map();
for (const name of packages) {
  const dir = path.join(pkgDir, name);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  if (!pkg.scripts?.bench) {
    status.set(name, "no bench script");
    continue;
  }
  if (collectOnly || (only.length > 0 && !only.includes(name))) {
    status.set(name, "not run now; results from an earlier run");
    continue;
  }
  console.error(`\n=== bench: ${pkg.name} ===`);
  const t0 = Date.now();
  const r = spawnSync("npm", ["run", "bench", "--if-present"], { cwd: dir, stdio: "inherit" });
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  status.set(name, r.status === 0 ? `ran in ${secs} s` : `FAILED (exit ${r.status ?? r.signal}) after ${secs} s`);
}

const m = machine();
const sections = [];
for (const [name, file] of packages.flatMap((n) => ["RESULTS.md", "RESULTS-gpu.md"].map((f) => [n, path.join(pkgDir, n, "bench", f)]))) {
  if (!fs.existsSync(file)) continue;
  const body = fs
    .readFileSync(file, "utf8")
    .trim()
    .replace(/^(#+)/gm, "#$1"); // nest the package's headings under its section
  sections.push(`## packages/${name}${file.endsWith("-gpu.md") ? " on webgpu (npm run bench:gpu)" : ` (${status.get(name)})`}\n\nSource: \`packages/${name}/bench/${path.basename(file)}\`, last modified ${fs.statSync(file).mtime.toISOString()}.\n\n${body}\n`);
}
const failed = [...status].filter(([, s]) => s.startsWith("FAILED"));
const out = `# RARL-TS benchmarks

Collected by \`npm run bench\` (tools/bench.mjs) from each package's \`bench/RESULTS.md\`.

- Machine: ${m.cpu}, ${m.cores} logical cores, ${m.ramGiB} GiB RAM
- Node ${process.version}
- Date: ${new Date().toISOString()}
- Packages: ${packages.map((p) => `${p} (${status.get(p)})`).join(", ")}

Each section states its own machine, configuration and command; a package's numbers were measured when its RESULTS.md was written.

${sections.join("\n")}`;
writeAtomic(path.join(root, "BENCHMARKS.md"), out);
console.error(`\nBENCHMARKS.md: ${sections.length} package section(s)${failed.length ? `; failed: ${failed.map(([n]) => n).join(", ")}` : ""}`);
process.exitCode = failed.length ? 1 : 0;
