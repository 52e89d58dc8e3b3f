import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { RarlError } from "./errors";
import { getLogger } from "./logger";

const log = getLogger("lock");

/** Another live process holds the lock of an output. `details`: target, lockFile, pid, host, command, since. */
export class OutputLockedError extends RarlError {}

/** What a lock file holds (one JSON object). */
export interface LockHolder {
  pid: number;
  host: string;
  /** What the holder runs, e.g. "rarl judge". */
  command: string;
  /** ISO time the lock was taken. */
  since: string;
  /** Random token telling this lock from a later one of the same PID. */
  token: string;
}

/** A held output lock; `release()` removes it (also done when the process exits). */
export interface OutputLock {
  readonly target: string;
  readonly file: string;
  release(): void;
}

/** The lock file of an output (file or folder): `.<name>.rarl-lock` beside it, so nothing is added inside a run folder. */
export function lockFileFor(target: string): string {
  const abs = path.resolve(target);
  return path.join(path.dirname(abs), `.${path.basename(abs)}.rarl-lock`);
}

function readHolder(file: string): LockHolder | null {
  try {
    const h = JSON.parse(fs.readFileSync(file, "utf8"));
    return h && Number.isInteger(h.pid) && typeof h.token === "string" ? (h as LockHolder) : null;
  } catch {
    return null;
  }
}

/** True when process `pid` of this machine runs (or may: one we may not signal counts as running). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True when the holder runs (or may: another host's PID cannot be checked). */
function alive(h: LockHolder): boolean {
  return h.host !== os.hostname() || pidAlive(h.pid);
}

const held = new Map<string, string>(); // lock file -> our token
let exitHook = false;

function releaseFile(file: string): void {
  const token = held.get(file);
  if (token === undefined) return;
  held.delete(file);
  if (readHolder(file)?.token === token) fs.rmSync(file, { force: true });
}

/**
 * Takes the single-writer lock of an output (a results file or a run folder) before anything is written to it.
 *
 * The lock is a file `.<name>.rarl-lock` beside the output holding `{pid, host, command, since, token}`; it is
 * created whole (written to a temp file, then hard-linked into place, which fails when the lock exists), so a
 * reader never sees a half-written lock. When the lock exists:
 *  - its holder runs (same host, `kill(pid, 0)` succeeds): throws {@link OutputLockedError} naming the PID;
 *  - its holder is dead (a crash, SIGKILL): the lock is taken over with a warning. The stale lock is first
 *    renamed aside and checked to be the one read, so two processes taking over at once cannot both win.
 * `release()` (and process exit) removes the lock if it is still ours. A lock of the same process counts as held:
 * two writers in one process are refused too.
 */
export function lockOutput(target: string, opts: { command?: string } = {}): OutputLock {
  const file = lockFileFor(target);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const me: LockHolder = {
    pid: process.pid,
    host: os.hostname(),
    command: opts.command ?? (path.basename(process.argv[1] ?? "node") + (process.argv[2] ? ` ${process.argv[2]}` : "")),
    since: new Date().toISOString(),
    token: randomBytes(8).toString("hex"),
  };
  const tmp = `${file}.${process.pid}.${me.token}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(me)}\n`);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        fs.linkSync(tmp, file);
        break;
      } catch (e: any) {
        if (e?.code !== "EEXIST") throw e;
      }
      const holder = readHolder(file);
      if (holder && alive(holder)) {
        const where = holder.host === me.host ? "" : ` on ${holder.host}`;
        throw new OutputLockedError(
          `${target} is being written by another process (PID ${holder.pid}${where}, "${holder.command}", since ${holder.since}); ` +
            `wait for it to end or stop it. If PID ${holder.pid} is not a rarl process, delete ${file}.`,
          { code: "OUTPUT_LOCKED", details: { target, lockFile: file, ...holder, token: undefined } },
        );
      }
      if (attempt >= 20) throw new OutputLockedError(`could not take the lock ${file} of ${target}: it keeps changing`, { code: "OUTPUT_LOCKED", details: { target, lockFile: file } });
      // Stale (dead holder, or unreadable: not written by lockOutput). Move it aside, check it is the one we read.
      const aside = `${file}.stale.${process.pid}.${me.token}`;
      try {
        fs.renameSync(file, aside);
      } catch (e: any) {
        if (e?.code === "ENOENT") continue; // someone else took it over first
        throw e;
      }
      const moved = readHolder(aside);
      if ((moved?.token ?? null) !== (holder?.token ?? null)) {
        // a live lock was created between our read and the rename: put it back (unless someone holds it by now)
        try {
          fs.linkSync(aside, file);
        } catch {
          /* the lock is held again */
        }
        fs.rmSync(aside, { force: true });
        continue;
      }
      fs.rmSync(aside, { force: true });
      log.warn(
        holder
          ? `taking over the lock of ${target}: its holder PID ${holder.pid} ("${holder.command}", since ${holder.since}) is no longer running`
          : `taking over the unreadable lock ${file} of ${target}`,
        { lockFile: file },
      );
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  held.set(file, me.token);
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const f of [...held.keys()]) releaseFile(f);
    });
  }
  return { target, file, release: () => releaseFile(file) };
}

/** Runs `fn` holding the lock of `target`; the lock is released when `fn` settles. */
export async function withOutputLock<T>(target: string, fn: () => Promise<T> | T, opts: { command?: string } = {}): Promise<T> {
  const lock = lockOutput(target, opts);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
