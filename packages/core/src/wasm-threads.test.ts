import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const here = path.dirname(fileURLToPath(import.meta.url));
const child = path.join(here, "testing", "wasm-threads-child.ts");

/** Runs the child script; resolves with its exit code, stdout and wall time (killed after 60 s = hang). */
function runChild(env: Record<string, string>): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, ["--import", "tsx", child], {
      cwd: path.resolve(here, ".."),
      env: { ...process.env, RARL_LOG_LEVEL: "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => {
      out += d;
    });
    p.stderr.on("data", (d) => {
      err += d;
    });
    const timer = setTimeout(() => p.kill("SIGKILL"), 60_000);
    p.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err, ms: Date.now() - t0 });
    });
  });
}

describe("opt-in 2-thread wasm (RARL_WASM_THREADS=2)", () => {
  it("runs with 2 threads, gives the cpu backend's numbers, and the process exits by itself", async () => {
    const [threaded, cpu] = await Promise.all([
      runChild({ RARL_BACKEND: "", RARL_WASM_THREADS: "2", CHILD_BACKEND: "wasm" }),
      runChild({ RARL_BACKEND: "", CHILD_BACKEND: "cpu" }),
    ]);
    expect(threaded.err).not.toMatch(/Error/);
    expect(threaded.code).toBe(0); // exited on its own, not killed (null) by the 60 s timer
    expect(cpu.code).toBe(0);
    const t = JSON.parse(threaded.out.trim().split("\n").at(-1)!);
    const c = JSON.parse(cpu.out.trim().split("\n").at(-1)!);
    expect(t.backend).toBe("wasm");
    expect(t.threads).toBe(2);
    expect(t.configured).toBe(2);
    for (const k of ["y", "g"] as const) {
      expect(t[k].length).toBe(c[k].length);
      let worst = 0;
      for (let i = 0; i < c[k].length; i++) worst = Math.max(worst, Math.abs(t[k][i] - c[k][i]) / (1 + Math.abs(c[k][i])));
      expect(worst).toBeLessThan(1e-4);
    }
  });
});
