import { vi } from "vitest";
import { runCli } from "../program";

/**
 * Test helper: runs the CLI in-process with stdout and stderr captured (not printed), and leaves process.exitCode as
 * it found it. Returns the exit code and what was written.
 */
export async function captureCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((c: any) => {
    out += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, "write").mockImplementation((c: any) => {
    err += String(c);
    return true;
  });
  const saved = process.exitCode;
  try {
    const code = await runCli(args);
    return { code, out, err };
  } finally {
    process.exitCode = saved;
    o.mockRestore();
    e.mockRestore();
  }
}
