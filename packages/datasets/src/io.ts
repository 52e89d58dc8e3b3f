import fs from "node:fs";
import readline from "node:readline";
import { parse as csvParse } from "csv-parse";
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { DatasetError } from "./errors";

/** One raw record from a file: its 1-based row number and either the parsed value or a row-level parse error. */
export type RawRow = { row: number; value: unknown; error?: undefined } | { row: number; value?: undefined; error: DatasetError };

function badFile(file: string, msg: string, cause?: unknown): DatasetError {
  return new DatasetError(msg, { code: "DATASET_BAD_FILE", file, cause });
}

export function assertFile(file: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw badFile(file, "file not found", e);
  }
  if (!st.isFile()) throw badFile(file, "not a regular file");
}

/** Reads a whole JSON file (JSON arrays of a few MB are the published form of these datasets). */
export function readJsonFile(file: string): unknown {
  assertFile(file);
  const text = fs.readFileSync(file, "utf8").replace(/^\uFEFF/, "");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badFile(file, `not valid JSON (${(e as Error).message})`, e);
  }
}

/** Streams the lines of a text file (any size) with 1-based line numbers; blank lines are skipped. */
export async function* readLines(file: string): AsyncGenerator<{ row: number; line: string }> {
  assertFile(file);
  const rl = readline.createInterface({ input: fs.createReadStream(file, { encoding: "utf8" }), crlfDelay: Number.POSITIVE_INFINITY });
  let row = 0;
  try {
    for await (let line of rl) {
      row++;
      if (row === 1) line = line.replace(/^\uFEFF/, "");
      if (line.trim() === "") continue;
      yield { row, line };
    }
  } finally {
    rl.close();
  }
}

/** Streams a JSONL file; a malformed line becomes a row-level error (skippable). */
export async function* readJsonl(file: string): AsyncGenerator<RawRow> {
  for await (const { row, line } of readLines(file)) {
    try {
      yield { row, value: JSON.parse(line) };
    } catch (e) {
      yield {
        row,
        error: new DatasetError(`not valid JSON (${(e as Error).message})`, { code: "DATASET_BAD_ROW", file, row, cause: e }),
      };
    }
  }
}

/** Rows of a JSON array file (or of `obj[key]` for the first array-valued key when the top level is an object). */
export function* jsonArrayRows(file: string, data: unknown): Generator<RawRow> {
  let arr: unknown[] | undefined;
  if (Array.isArray(data)) arr = data;
  else if (data && typeof data === "object") {
    for (const v of Object.values(data)) {
      if (Array.isArray(v)) {
        arr = v;
        break;
      }
    }
  }
  if (!arr) throw badFile(file, "expected a JSON array of records");
  for (let i = 0; i < arr.length; i++) yield { row: i + 1, value: arr[i] };
}

/**
 * Streams a parquet file row group by row group through hyparquet (snappy natively; gzip, zstd, brotli,
 * lz4 through hyparquet-compressors). `utf8: false` keeps binary columns (image bytes) as Uint8Array;
 * INT64 comes back as BigInt.
 */
export async function* readParquet(file: string): AsyncGenerator<RawRow> {
  assertFile(file);
  let buf: Awaited<ReturnType<typeof asyncBufferFromFile>>;
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    buf = await asyncBufferFromFile(file);
    metadata = await parquetMetadataAsync(buf);
  } catch (e) {
    throw badFile(file, `not a readable parquet file (${(e as Error).message})`, e);
  }
  let start = 0;
  for (const rg of metadata.row_groups) {
    const n = Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = (await parquetReadObjects({ file: buf, metadata, rowStart: start, rowEnd: start + n, utf8: false, compressors })) as Record<
        string,
        unknown
      >[];
    } catch (e) {
      throw badFile(file, `cannot decode parquet rows ${start + 1}-${start + n} (${(e as Error).message})`, e);
    }
    for (let i = 0; i < rows.length; i++) yield { row: start + i + 1, value: rows[i] };
    start += n;
  }
}

/** Streams a CSV file with a header row (csv-parse); records are objects keyed by header; row = the record's line. */
export async function* readCsv(file: string, delimiter = ","): AsyncGenerator<RawRow> {
  assertFile(file);
  const parser = fs.createReadStream(file).pipe(
    csvParse({ columns: true, bom: true, delimiter, skip_empty_lines: true, relax_column_count: true, info: true }),
  );
  try {
    for await (const rec of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      yield { row: rec.info.lines, value: rec.record };
    }
  } catch (e) {
    throw badFile(file, `CSV parse error (${(e as Error).message})`, e);
  }
}
