import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lockFileFor, lockOutput, OutputLockedError, withOutputLock } from "./lock";
import { captureLogs } from "./testing/logs";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-lock-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));


const holder = (pid: number, extra = {}) => JSON.stringify({ pid, host: os.hostname(), command: "rarl judge", since: "2026-01-01T00:00:00.000Z", token: "t0", ...extra });

describe("lockOutput (single writer per output)", () => {
  it("a second writer is refused with the holder's PID; after release the output can be locked again", async () => {
    const out = path.join(dir, "results.jsonl");
    const a = lockOutput(out, { command: "rarl judge" });
    expect(a.file).toBe(path.join(dir, ".results.jsonl.rarl-lock"));
    expect(JSON.parse(fs.readFileSync(a.file, "utf8"))).toMatchObject({ pid: process.pid, command: "rarl judge" });
    let err: unknown;
    try {
      lockOutput(out);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutputLockedError);
    expect((err as Error).message).toContain(`PID ${process.pid}`);
    expect((err as Error).message).toContain(out);
    a.release();
    expect(fs.existsSync(a.file)).toBe(false);
    await expect(withOutputLock(out, () => 7)).resolves.toBe(7);
    expect(fs.existsSync(a.file)).toBe(false);
  });

  it("refuses while a live process holds the lock; takes over a dead holder's lock with a warning", async () => {
    const out = path.join(dir, "run");
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      fs.writeFileSync(lockFileFor(out), holder(child.pid!));
      expect(() => lockOutput(out)).toThrow(new RegExp(`being written by another process \\(PID ${child.pid}, "rarl judge"`));
    } finally {
      child.kill("SIGKILL");
      await new Promise((r) => child.on("close", r));
    }
    // the same PID, now dead (as after a SIGKILL)
    const { value: lock, lines } = captureLogs(() => lockOutput(out));
    expect(lines.join("\n")).toMatch(new RegExp(`taking over the lock of .*run: its holder PID ${child.pid} .*is no longer running`));
    expect(JSON.parse(fs.readFileSync(lock.file, "utf8")).pid).toBe(process.pid);
    lock.release();
  });

  it("an unreadable lock file (not written by lockOutput) is taken over with a warning", () => {
    const out = path.join(dir, "x.jsonl");
    fs.writeFileSync(lockFileFor(out), "{garbage");
    const { value: lock, lines } = captureLogs(() => lockOutput(out));
    expect(lines.join("\n")).toMatch(/taking over the unreadable lock/);
    lock.release();
  });

  it("a lock from another host is never taken over (its PID cannot be checked)", () => {
    const out = path.join(dir, "remote.jsonl");
    fs.writeFileSync(lockFileFor(out), holder(999_999_999, { host: "other-host" }));
    expect(() => lockOutput(out)).toThrow(/PID 999999999 on other-host/);
    fs.rmSync(lockFileFor(out));
  });

  it("is released at process exit; a SIGKILLed holder's lock is taken over", () => {
    const out = path.join(dir, "child.jsonl");
    const lockTs = new URL("./lock.ts", import.meta.url).pathname;
    const script = `import { lockOutput } from ${JSON.stringify(lockTs)}; lockOutput(${JSON.stringify(out)}); if (process.argv.includes("kill")) process.kill(process.pid, "SIGKILL");`;
    const run = (mode: string) => spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, mode], { encoding: "utf8", env: { ...process.env, RARL_LOG_LEVEL: "warn" } });
    const r1 = run("exit");
    expect(r1.status, r1.stderr).toBe(0);
    expect(fs.existsSync(lockFileFor(out))).toBe(false);
    const r2 = run("kill");
    expect(r2.signal).toBe("SIGKILL");
    expect(fs.existsSync(lockFileFor(out))).toBe(true);
    const { value: lock, lines } = captureLogs(() => lockOutput(out));
    expect(lines.join("\n")).toMatch(/is no longer running/);
    lock.release();
  });
});
