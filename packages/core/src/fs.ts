import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

/** A temp file beside `target`; `commit()` fsyncs and renames it over `target`, `abort()` removes it. */
export interface TempFile {
  fd: number;
  path: string;
  commit(): void;
  abort(): void;
}

export function openTemp(target: string): TempFile {
  const dir = path.dirname(path.resolve(target));
  const tmpPath = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const fd = fs.openSync(tmpPath, "wx", 0o644);
  let open = true;
  const close = () => {
    if (open) {
      open = false;
      fs.closeSync(fd);
    }
  };
  return {
    fd,
    path: tmpPath,
    commit() {
      fs.fsyncSync(fd);
      close();
      fs.renameSync(tmpPath, target);
    },
    abort() {
      try {
        close();
      } catch {
        /* already closed */
      }
      fs.rmSync(tmpPath, { force: true });
    },
  };
}

/**
 * Writes a file atomically: the data goes to a temp file in the same directory, which is fsynced
 * and renamed over `file`, so readers see either the old or the new content, never a partial one.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = openTemp(file);
  try {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(tmp.fd, bytes, done, Math.min(bytes.length - done, 2 ** 30));
    tmp.commit();
  } catch (e) {
    tmp.abort();
    throw e;
  }
}
