import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** CPU model (lscpu, else os.cpus), logical cores, RAM, node version, load average: the header of every RESULTS.md. */
export function machineInfo(): { cpu: string; cores: number; ramGiB: number; node: string; load: string } {
  let cpu = os.cpus()[0]?.model ?? "unknown";
  try {
    const m = execFileSync("lscpu", { encoding: "utf8" }).match(/^Model name:\s*(.+)$/m);
    if (m) cpu = m[1].trim();
  } catch {
    /* no lscpu */
  }
  return {
    cpu,
    cores: os.cpus().length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    load: os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(" "),
  };
}

/**
 * Runs `main` when the module at `metaUrl` is the script node was started with (`npx tsx bench/x.ts`), not when
 * another bench imports it (bench:gpu imports the matmul, attention and sampling tables); exits 0, or 1 with the error.
 */
export function runIfMain(metaUrl: string, main: () => Promise<void>): void {
  if (!process.argv[1] || fileURLToPath(metaUrl) !== path.resolve(process.argv[1])) return;
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
