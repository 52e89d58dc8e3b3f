#!/usr/bin/env node
// Packaging check (`npm run pack:check`):
//  1. builds every package (`npx nx run-many -t build`; `--no-build` skips this),
//  2. `npm pack`s each @rarl package into a temp dir,
//  3. installs all tarballs into a fresh temp project under os.tmpdir() (outside the repo) from the npm cache
//     (--prefer-offline, --ignore-scripts: no install script runs, optional peers such as tfjs-node are not installed),
//  4. imports every public entry of every package with both `import()` (ESM) and `require()` (CJS), and runs each
//     package bin with --help.
// Also starts @rarl/core's wasm backend and takes a gradient from the installed tarball (ESM and CJS).
//  5. fresh clone (what a new user does): `git clone`s HEAD into a temp dir, runs `npm ci`, checks that
//     node_modules/.bin/rarl exists at once and that `npx rarl --help` says "run `npm run build` first", then
//     `npm run build` and `npx rarl --help` must print the usage. `--no-clone` skips this stage, `--clone-only`
//     runs only it. It checks the committed HEAD: uncommitted changes are not in the clone (a warning says so).
// `node tools/pack-check.mjs core model` checks only those packages. Exit code 0 when everything loads;
// the temp dirs are removed unless --keep. Not a vitest test: the build alone takes minutes on 2 shared cores.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2).filter((a) => a.startsWith("--")));
// Optional positional names (e.g. `core model`) restrict the check to those packages (their @rarl deps must be listed too).
const only = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: "utf8", stdio: opts.capture ? "pipe" : "inherit", ...opts });
  if (r.status !== 0) {
    const out = opts.capture ? `\n${r.stdout ?? ""}${r.stderr ?? ""}` : "";
    throw new Error(`${cmd} ${argv.join(" ")} failed (exit ${r.status ?? r.signal}) in ${opts.cwd ?? process.cwd()}${out}`);
  }
  return r.stdout ?? "";
}

/** Stage 5: a fresh clone of HEAD, `npm ci`, `npx rarl --help` before and after `npm run build`. */
function checkFreshClone() {
  const dirty = spawnSync("git", ["status", "--porcelain", "--untracked-files=no"], { cwd: root, encoding: "utf8" }).stdout.trim();
  if (dirty) console.error("pack-check: WARNING the working tree has uncommitted changes; the fresh clone checks HEAD");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-clone-check-"));
  const clone = path.join(work, "rarl-ts");
  let ok = false;
  try {
    run("git", ["clone", "--quiet", "--no-hardlinks", root, clone]);
    if (fs.existsSync(path.join(work, "shared"))) throw new Error(`${work}/shared exists; the clone would not be alone`);
    console.error(`pack-check: fresh clone at ${clone}: npm ci`);
    run(npm, ["ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: clone });
    const bin = path.join(clone, "node_modules", ".bin", "rarl");
    if (!fs.existsSync(bin)) throw new Error("fresh clone: npm ci did not link node_modules/.bin/rarl");
    const env = { ...process.env, RARL_LOG_LEVEL: "warn" };
    const before = spawnSync("npx", ["--no-install", "rarl", "--help"], { cwd: clone, encoding: "utf8", env });
    if (before.status === 0 || !/run `npm run build` first/.test(before.stderr)) {
      throw new Error(`fresh clone: before the build, npx rarl --help should fail with "run \`npm run build\` first"; got exit ${before.status}:\n${before.stdout}${before.stderr}`);
    }
    console.error(`pack-check: fresh clone, before the build: ${before.stderr.trim()}`);
    run(npm, ["run", "build", "--", "--outputStyle=static"], { cwd: clone, env: { ...process.env, NX_SKIP_NX_CACHE: "true", NX_DAEMON: "false" } });
    const help = run("npx", ["--no-install", "rarl", "--help"], { cwd: clone, capture: true, env });
    if (!/Usage: rarl/.test(help)) throw new Error(`fresh clone: npx rarl --help printed no usage:\n${help}`);
    console.log(`fresh clone: npx rarl --help: ${help.split("\n")[0]}`);
    ok = true;
  } finally {
    if (args.has("--keep") || !ok) console.error(`pack-check: fresh clone kept at ${clone}`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

const t0 = Date.now();
if (args.has("--clone-only")) {
  checkFreshClone();
  console.error(`pack-check: OK, fresh clone: npm ci, npx rarl --help before and after npm run build (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  process.exit(0);
}
const pkgs = fs
  .readdirSync(path.join(root, "packages"))
  .map((d) => path.join(root, "packages", d))
  .filter((d) => fs.existsSync(path.join(d, "package.json")))
  .map((dir) => ({ dir, json: JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8")) }))
  .filter((p) => p.json.name?.startsWith("@rarl/") && !p.json.private)
  .filter((p) => only.length === 0 || only.includes(p.json.name.slice("@rarl/".length)));

if (!args.has("--no-build")) {
  console.error("pack-check: building all packages");
  const projects = only.length ? ["-p", ...pkgs.map((p) => p.json.name)] : [];
  run("npx", ["nx", "run-many", "-t", "build", "--outputStyle=static", ...projects], { cwd: root });
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-pack-check-"));
const tarDir = path.join(work, "tarballs");
const proj = path.join(work, "project");
fs.mkdirSync(tarDir);
fs.mkdirSync(proj);
let ok = false;
try {
  const tarballs = [];
  for (const p of pkgs) {
    const out = run(npm, ["pack", "--json", "--pack-destination", tarDir], { cwd: p.dir, capture: true });
    const info = JSON.parse(out.slice(out.indexOf("[")))[0];
    const missing = ["dist/index.js", "dist/index.cjs", "dist/index.d.ts"].filter((f) => !info.files.some((x) => x.path === f));
    if (missing.length) throw new Error(`${p.json.name}: tarball lacks ${missing.join(", ")}`);
    if (!info.files.some((x) => x.path === "README.md")) console.error(`pack-check: WARNING ${p.json.name} has no README.md`);
    tarballs.push(path.join(tarDir, info.filename));
    console.error(`pack-check: packed ${info.filename} (${info.files.length} files, ${(info.size / 1024).toFixed(0)} KiB)`);
  }

  fs.writeFileSync(path.join(proj, "package.json"), JSON.stringify({ name: "rarl-pack-check", version: "0.0.0", private: true }, null, 2));
  console.error(`pack-check: installing ${tarballs.length} tarballs into ${proj}`);
  run(npm, ["install", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error", ...tarballs], { cwd: proj });
  for (const forbidden of ["@tensorflow/tfjs-node", "@tensorflow/tfjs-node-gpu"]) {
    if (fs.existsSync(path.join(proj, "node_modules", forbidden))) throw new Error(`${forbidden} was installed; it must stay an optional peer`);
  }

  // One probe per module system; each imports every public entry and checks it exports something.
  const entries = [];
  for (const p of pkgs) {
    for (const key of Object.keys(p.json.exports ?? { ".": {} })) {
      if (key.endsWith("package.json")) continue;
      entries.push(key === "." ? p.json.name : `${p.json.name}/${key.replace(/^\.\//, "")}`);
    }
  }
  const list = JSON.stringify(entries);
  fs.writeFileSync(
    path.join(proj, "probe.mjs"),
    `for (const e of ${list}) { const m = await import(e); const n = Object.keys(m).filter((k) => k !== "default").length; if (n === 0) throw new Error(e + ": ESM entry exports nothing"); console.log("esm", e, n, "exports"); }\n`,
  );
  fs.writeFileSync(
    path.join(proj, "probe.cjs"),
    `for (const e of ${list}) { const m = require(e); const n = Object.keys(m).length; if (n === 0) throw new Error(e + ": CJS entry exports nothing"); console.log("cjs", e, n, "exports"); }\n`,
  );
  // Empty stub packages export nothing yet; report them instead of failing, unless --strict.
  const probeEnv = { ...process.env, RARL_LOG_LEVEL: "warn" };
  for (const probe of ["probe.mjs", "probe.cjs"]) {
    const r = spawnSync(process.execPath, [probe], { cwd: proj, encoding: "utf8", env: probeEnv });
    process.stdout.write(r.stdout);
    if (r.status !== 0) {
      const stub = /entry exports nothing/.test(r.stderr) && !args.has("--strict");
      if (!stub) throw new Error(`${probe} failed:\n${r.stderr}`);
      // rerun entry by entry so one empty stub does not hide the others
      for (const e of entries) {
        const code = probe.endsWith(".mjs") ? `const m = await import(${JSON.stringify(e)}); console.log(Object.keys(m).filter(k=>k!=="default").length)` : `console.log(Object.keys(require(${JSON.stringify(e)})).length)`;
        const rr = spawnSync(process.execPath, [probe.endsWith(".mjs") ? "--input-type=module" : "--input-type=commonjs", "-e", code], { cwd: proj, encoding: "utf8", env: probeEnv });
        if (rr.status !== 0) throw new Error(`${probe} ${e} failed to load:\n${rr.stderr}`);
        if (rr.stdout.trim() === "0") console.log(`${probe.endsWith(".mjs") ? "esm" : "cjs"} ${e} loads but exports nothing yet (stub)`);
      }
    }
  }
  // @rarl/core must work from the installed tarball: wasm files found in node_modules, gradients registered.
  const coreProbe = (mod) =>
    `const core = ${mod}; const tf = ${mod.replace("@rarl/core", "@tensorflow/tfjs-core")};
    core.initBackend({ prefer: ["wasm"] }).then((b) => {
      const g = tf.grad((x) => tf.sum(tf.square(x)))(tf.tensor1d([3])).dataSync()[0];
      const want = Number(process.env.RARL_WASM_THREADS ?? 1);
      if (b !== "wasm" || g !== 6 || core.getWasmThreads() !== want) throw new Error("core smoke test: backend " + b + ", grad " + g + ", threads " + core.getWasmThreads());
      console.log("core smoke test (" + ${JSON.stringify(mod.startsWith("await") ? "esm" : "cjs")} + "): wasm backend + gradient OK");
    });`;
  for (const [type, mod] of !pkgs.some((p) => p.json.name === "@rarl/core") ? [] : [
    ["module", 'await import("@rarl/core")'],
    ["commonjs", 'require("@rarl/core")'],
  ]) {
    for (const threads of ["1", "2"]) {
      // a 2-thread wasm must still let the process exit by itself (timeout = hang)
      const r = spawnSync(process.execPath, [`--input-type=${type}`, "-e", coreProbe(mod)], {
        cwd: proj,
        encoding: "utf8",
        env: { ...probeEnv, RARL_WASM_THREADS: threads },
        timeout: 120_000,
      });
      if (r.status !== 0) throw new Error(`core smoke test (${type}, ${threads} wasm thread(s)) failed (exit ${r.status ?? r.signal}):\n${r.stderr}`);
      process.stdout.write(r.stdout.replace("OK", `OK with ${threads} wasm thread(s), process exited`));
    }
  }
  for (const p of pkgs) {
    for (const bin of Object.keys(typeof p.json.bin === "string" ? { [p.json.name.split("/")[1]]: 1 } : (p.json.bin ?? {}))) {
      const out = run(path.join(proj, "node_modules", ".bin", bin), ["--help"], { cwd: proj, capture: true, env: probeEnv });
      console.log(`bin ${bin} --help: ${out.split("\n")[0]}`);
    }
  }
  ok = true;
} finally {
  if (args.has("--keep") || !ok) console.error(`pack-check: temp dir kept at ${work}`);
  else fs.rmSync(work, { recursive: true, force: true });
}
if (!args.has("--no-clone") && only.length === 0) checkFreshClone();
console.error(`pack-check: OK, ${pkgs.length} packages packed, installed outside the repo and imported via ESM and CJS${args.has("--no-clone") || only.length ? "" : "; a fresh clone runs npx rarl"} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
