import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { completeJsonlLines } from "@rarl/core";
import type { PredictionRecord, Usage, Verdict } from "./types";

/**
 * A cached judgement. Only verdicts are written: every failure (429, 5xx, timeout, unusable reply) may go away on
 * a re-run. "failed" entries are still read from caches written by earlier versions; the judge ignores them.
 */
export type CacheEntry =
  | { key: string; status: "scored"; verdict: Verdict; usage?: Usage }
  | { key: string; status: "failed"; error: string; usage?: Usage };

/** Hash of the judged content of a sample (id and dataset excluded, so a renamed sample still hits). */
export function inputHash(s: PredictionRecord): string {
  const payload = JSON.stringify([s.question, s.reference, s.reference_reasoning ?? null, s.prediction, s.prediction_reasoning ?? null]);
  return createHash("sha256").update(payload).digest("hex");
}

/** Cache key = judge model + prompt version + input hash. */
export function cacheKey(judge: string, promptVersion: string, s: PredictionRecord): string {
  return createHash("sha256").update(JSON.stringify([judge, promptVersion, inputHash(s)])).digest("hex");
}

function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_");
}

/**
 * Persistent judgement cache: one append-only JSONL file per judge in `dir`. Each entry is written
 * as a single line with one write call as soon as it is known, so a crash loses nothing already
 * saved; a torn last line is ignored on load.
 */
export class JudgeCache {
  private entries = new Map<string, CacheEntry>();
  private fd: number | undefined;
  readonly file: string;

  constructor(dir: string, judge: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, `${slug(judge)}.jsonl`);
    // A torn last line (a crash mid-write) is ignored with a warning and closed with a newline, so the next entry
    // starts on a line of its own. (Not cut off: other runs may share this cache file and append to it meanwhile.)
    const text = fs.existsSync(this.file) ? fs.readFileSync(this.file, "utf8") : "";
    const lines = completeJsonlLines(this.file, text);
    if (text.length > 0 && !text.endsWith("\n")) fs.appendFileSync(this.file, "\n");
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const e = JSON.parse(line) as CacheEntry;
        if (e && typeof e.key === "string" && (e.status === "scored" || e.status === "failed")) this.entries.set(e.key, e);
      } catch {
        /* a bad line inside the file (written by hand?) is skipped: the cache only saves requests */
      }
    }
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): CacheEntry | undefined {
    return this.entries.get(key);
  }

  put(entry: CacheEntry): void {
    this.entries.set(entry.key, entry);
    if (this.fd === undefined) this.fd = fs.openSync(this.file, "a");
    const line = Buffer.from(`${JSON.stringify(entry)}\n`, "utf8");
    if (fs.writeSync(this.fd, line) !== line.length) throw new Error(`${this.file}: short write`);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}
