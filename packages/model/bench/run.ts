/**
 * `npm run bench` (in packages/model): runs each section listed in SECTIONS (a module whose default export is
 * `async () => markdown`) and writes packages/model/bench/RESULTS.md atomically. `npm run bench -- forward` runs
 * only the sections whose name contains "forward". To add a section: one import + one SECTIONS entry.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { initBackend, writeFileAtomic } from "@rarl/core";
import generation from "./generation";
import forward from "./sections/10-forward";

const SECTIONS: [string, () => Promise<string>][] = [
  ["10-forward", forward],
  ["20-generation", generation],
];

const here = path.dirname(fileURLToPath(import.meta.url));
const backend = await initBackend();
const only = process.argv.slice(2);
const parts: string[] = [];
for (const [name, run] of SECTIONS) {
  if (only.length > 0 && !only.some((o) => name.includes(o))) continue;
  console.error(`bench: ${name}`);
  const t0 = performance.now();
  parts.push(await run());
  console.error(`bench: ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
const cpu = os.cpus();
const header = [
  "# @rarl/model benchmarks",
  "",
  `- date: ${new Date().toISOString()}`,
  `- machine: ${cpu.length} x ${cpu[0]?.model ?? "unknown CPU"}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`,
  `- load average at the end: ${os.loadavg().map((x) => x.toFixed(1)).join(" / ")} (1/5/15 min; the 2 cores are shared with other jobs, so timings are the fastest of several runs)`,
  `- backend: ${backend} (tfjs 4.22.0${backend === "wasm" ? `, ${process.env.RARL_WASM_THREADS ?? 1} thread(s)` : ""})`,
  `- command: \`cd packages/model && npm run bench${only.length ? ` -- ${only.join(" ")}` : ""}\``,
  "",
].join("\n");
// the 2B run (npm run bench:2b, minutes and ~9 GB of RAM) is recorded separately and included as last measured
const twoB = path.join(here, "RESULTS_2B.md");
if (fs.existsSync(twoB)) parts.push(`${fs.readFileSync(twoB, "utf8")}\n(recorded by \`npm run bench:2b\`; not re-run by \`npm run bench\`)\n`);
const out = `${header}\n${parts.join("\n")}`;
writeFileAtomic(path.join(here, "RESULTS.md"), out);
console.log(out);
