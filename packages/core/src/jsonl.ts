import fs from "node:fs";
import { getLogger } from "./logger";

const log = getLogger("jsonl");

/**
 * Splits the text of a JSONL file that a crash may have cut off. Every writer of the toolkit writes a record
 * as one whole line ending in "\n" with one write, so the only damage a crash can do is a torn last line: text
 * after the last "\n" that is not valid JSON. `complete` is the text without it, `torn` the torn text (null when
 * the file is whole). A last line without "\n" that parses is a whole record (only its newline is missing).
 */
export function splitTornTail(text: string): { complete: string; torn: string | null } {
  const nl = text.lastIndexOf("\n");
  const tail = text.slice(nl + 1);
  if (tail.trim() === "") return { complete: text, torn: null };
  try {
    JSON.parse(tail);
    return { complete: text, torn: null };
  } catch {
    return { complete: text.slice(0, nl + 1), torn: tail };
  }
}

/** Logs the warning for a torn last line of `file` (see {@link splitTornTail}). */
export function warnTornTail(file: string, torn: string, line: number): void {
  log.warn(`${file}:${line}: ignoring a torn last line (${Buffer.byteLength(torn)} bytes, cut off by a crash while it was written)`, { file, line });
}

/** The lines of JSONL `text` read from `file`, a torn last line (see {@link splitTornTail}) dropped with a warning. */
export function completeJsonlLines(file: string, text: string): string[] {
  const { complete, torn } = splitTornTail(text);
  const lines = complete.split("\n");
  if (torn !== null) warnTornTail(file, torn, lines.length);
  return lines;
}

/**
 * Reads a JSONL file for appending: a torn last line is cut off (with a warning) so that the next record starts
 * on a line of its own, and a last line missing only its "\n" gets it. Returns the whole lines' text.
 */
export function repairJsonlForAppend(file: string): string {
  if (!fs.existsSync(file)) return "";
  const text = fs.readFileSync(file, "utf8");
  const { complete, torn } = splitTornTail(text);
  if (torn !== null) {
    warnTornTail(file, torn, complete.split("\n").length);
    fs.truncateSync(file, Buffer.byteLength(complete));
    return complete;
  }
  if (text.length > 0 && !text.endsWith("\n")) {
    fs.appendFileSync(file, "\n");
    return `${text}\n`;
  }
  return text;
}

/**
 * Append-only JSONL writer: each record is one whole line handed to the OS with a single `write` on an O_APPEND
 * descriptor, so a killed process leaves at most a torn last line, never two records mixed. A torn last line
 * left by an earlier crash is cut off when the file is opened (unless `truncate`).
 */
export class JsonlWriter {
  private fd: number | undefined;
  constructor(
    readonly file: string,
    private opts: { truncate?: boolean; fsync?: boolean; replacer?: (key: string, value: unknown) => unknown } = {},
  ) {
    if (!opts.truncate) repairJsonlForAppend(file);
    this.fd = fs.openSync(file, opts.truncate ? "w" : "a");
  }
  append(record: unknown): void {
    if (this.fd === undefined) throw new Error(`${this.file}: JsonlWriter is closed`);
    const buf = Buffer.from(`${JSON.stringify(record, this.opts.replacer as never)}\n`, "utf8");
    const n = fs.writeSync(this.fd, buf);
    // A regular file takes the whole buffer in one write; a short write (disk full) must not go unnoticed.
    if (n !== buf.length) throw new Error(`${this.file}: short write (${n} of ${buf.length} bytes)`);
    if (this.opts.fsync) fs.fsyncSync(this.fd);
  }
  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
