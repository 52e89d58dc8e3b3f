#!/usr/bin/env node
// Completes package-lock.json with the platform-specific optional packages that the npm registry
// mirror of our build machines does not serve (it serves linux-x64-gnu binaries only, so npm leaves
// e.g. @biomejs/cli-darwin-arm64 out of the lock, and `npm ci` then refuses the lock as out of sync).
// Each missing entry gets the exact version its parent pins, `optional: true`, and os/cpu/libc from
// its name, so npm ci skips it on non-matching platforms exactly as it would with a full lock.
// Run after any `npm install` that rewrites package-lock.json: `node tools/lock-optional-platforms.mjs`.
import { readFileSync, renameSync, writeFileSync } from "node:fs";

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const pkgs = lock.packages;

const OS = ["android", "darwin", "freebsd", "linux", "openbsd", "openharmony", "sunos", "win32", "aix", "netbsd"];
const CPU = ["arm64", "x64", "ia32", "arm", "loong64", "ppc64", "riscv64", "s390x", "mips64el"];
function platformOf(name) {
  const base = name.split("/").pop();
  const parts = base.split("-");
  const os = parts.find((p) => OS.includes(p));
  const cpu = parts.find((p) => CPU.includes(p)) ?? (base.includes("gnueabihf") || base.includes("musleabihf") ? "arm" : undefined);
  const libc = /musl/.test(base) ? "musl" : /gnu/.test(base) && os === "linux" ? "glibc" : undefined;
  return { os, cpu, libc };
}

let added = 0;
for (const [loc, entry] of Object.entries(pkgs)) {
  for (const [dep, spec] of Object.entries(entry.optionalDependencies ?? {})) {
    const parentDir = loc === "" ? "" : `${loc}/`;
    const candidates = [`${parentDir}node_modules/${dep}`, `node_modules/${dep}`];
    if (candidates.some((c) => pkgs[c])) continue;
    if (!/^\d+\.\d+\.\d+/.test(spec)) continue; // only exact pins, as platform packages are
    const { os, cpu, libc } = platformOf(dep);
    if (!os || !cpu) continue;
    const e = { version: spec, optional: true };
    if (entry.dev) e.dev = true;
    e.os = [os];
    e.cpu = [cpu];
    if (libc) e.libc = [libc];
    pkgs[`node_modules/${dep}`] = e;
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a < b ? -1 : a > b ? 1 : 0)));
const tmp = new URL(`../package-lock.json.tmp-${process.pid}`, import.meta.url);
writeFileSync(tmp, `${JSON.stringify(lock, null, 2)}\n`);
renameSync(tmp, file);
console.log(`lock-optional-platforms: added ${added} entries`);
