import { DatasetError } from "./errors";
import type { AnswerType } from "./types";

/** Where a record came from, for error messages. */
export interface RowRef {
  file: string;
  row: number;
}

const dec = new TextDecoder("utf-8", { fatal: false });

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

/** Asserts the record is a plain object. */
export function asRecord(x: unknown, at: RowRef): Record<string, unknown> {
  if (!isRecord(x)) {
    throw new DatasetError(`expected an object, got ${describe(x)}`, { code: "DATASET_BAD_ROW", ...at });
  }
  return x;
}

export function describe(x: unknown): string {
  if (x === null) return "null";
  if (Array.isArray(x)) return "an array";
  if (x instanceof Uint8Array) return "binary data";
  return typeof x === "string" ? `the string ${JSON.stringify(x.slice(0, 40))}` : typeof x;
}

/** The first present key among `keys`, or undefined. */
export function pick(rec: Record<string, unknown>, keys: readonly string[]): [string, unknown] | undefined {
  for (const k of keys) if (rec[k] !== undefined && rec[k] !== null) return [k, rec[k]];
  return undefined;
}

/** A scalar as text: strings as is, numbers/bigints/booleans printed, UTF-8 bytes decoded; else undefined. */
export function scalarText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v === "bigint" || typeof v === "boolean") return String(v);
  if (v instanceof Uint8Array) return dec.decode(v);
  return undefined;
}

/** A required non-empty text field (first of `keys` present). Numbers are accepted and printed (answers like "2"). */
export function reqText(rec: Record<string, unknown>, keys: string | readonly string[], at: RowRef): string {
  const ks = typeof keys === "string" ? [keys] : keys;
  const hit = pick(rec, ks);
  if (!hit) {
    throw new DatasetError(`missing required field "${ks[0]}"${ks.length > 1 ? ` (or ${ks.slice(1).join(", ")})` : ""}`, {
      code: "DATASET_MISSING_FIELD",
      ...at,
      details: { field: ks[0] },
    });
  }
  const t = trimmedText(hit, at);
  if (t.length === 0) {
    throw new DatasetError(`field "${hit[0]}" is empty`, { code: "DATASET_MISSING_FIELD", ...at, details: { field: hit[0] } });
  }
  return t;
}

/** The trimmed text of a picked field; an error naming the field when its value is not text. */
function trimmedText(hit: [string, unknown], at: RowRef): string {
  const s = scalarText(hit[1]);
  if (s === undefined) {
    throw new DatasetError(`field "${hit[0]}" must be text, got ${describe(hit[1])}`, {
      code: "DATASET_BAD_FIELD",
      ...at,
      details: { field: hit[0] },
    });
  }
  return s.trim();
}

/** An optional text field: undefined when absent or empty; an error when present with a non-text value. */
export function optText(rec: Record<string, unknown>, keys: string | readonly string[], at: RowRef): string | undefined {
  const ks = typeof keys === "string" ? [keys] : keys;
  const hit = pick(rec, ks);
  if (!hit) return undefined;
  const t = trimmedText(hit, at);
  return t.length ? t : undefined;
}

const YES_NO = new Set(["yes", "no"]);

/** True when the answer is a plain yes/no (case and trailing punctuation ignored). */
export function isYesNo(answer: string): boolean {
  return YES_NO.has(answer.trim().toLowerCase().replace(/[.!]+$/, ""));
}

/** closed for yes/no answers, otherwise open: used where a dataset publishes no answer type. */
export function inferAnswerType(answer: string): AnswerType {
  return isYesNo(answer) ? "closed" : "open";
}

/** Parses a published answer type (OPEN/CLOSED/choice, any case). */
export function parseAnswerType(v: string, at: RowRef, field = "answer_type"): AnswerType {
  const t = v.trim().toLowerCase();
  if (t === "open" || t === "closed" || t === "choice") return t;
  throw new DatasetError(`field "${field}" must be OPEN, CLOSED or choice, got ${JSON.stringify(v)}`, {
    code: "DATASET_BAD_FIELD",
    ...at,
    details: { field },
  });
}

/** Copies JSON-safe scalar fields (bigint as number when safe, else string) into `extra`. */
export function jsonSafe(v: unknown): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return undefined;
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (isRecord(v)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const y = jsonSafe(x);
      if (y !== undefined) o[k] = y;
    }
    return o;
  }
  return v;
}

/** `extra` from the record's keys not in `used`. */
export function extraOf(rec: Record<string, unknown>, used: readonly string[]): Record<string, unknown> | undefined {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rec)) {
    if (used.includes(k) || v === undefined) continue;
    const y = jsonSafe(v);
    if (y !== undefined) o[k] = y;
  }
  return Object.keys(o).length ? o : undefined;
}
