// Test utilities (not exported from the package): temp folders, tiny images, parquet files.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import sharp from "sharp";
import { afterAll } from "vitest";

const made: string[] = [];
afterAll(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh temp folder, removed after the test file. */
export function tmpDir(prefix = "rarl-ds-"): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

/** A tiny real PNG (w x h, solid grey level v). */
export async function png(v = 128, w = 6, h = 5): Promise<Buffer> {
  return sharp({ create: { width: w, height: h, channels: 3, background: { r: v, g: v, b: v } } }).png().toBuffer();
}

export async function writePng(file: string, v = 128): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, await png(v));
}

export function writeJson(file: string, data: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(data, null, 1));
}

export function writeText(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

/**
 * A zstd frame made of raw (stored) blocks: valid zstd that any decoder must accept, which lets the
 * tests write ZSTD-coded parquet pages without a zstd compressor (Node 20 has none).
 */
export function zstdStored(input: Uint8Array): Uint8Array {
  const parts: number[] = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]; // magic, frame descriptor (no checksum, no FCS), window 2 MiB
  const MAX = 1 << 17;
  let off = 0;
  do {
    const n = Math.min(MAX, input.length - off);
    const last = off + n >= input.length ? 1 : 0;
    const h = last | (0 << 1) | (n << 3);
    parts.push(h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff);
    for (let i = 0; i < n; i++) parts.push(input[off + i]);
    off += n;
  } while (off < input.length);
  return new Uint8Array(parts);
}

export interface ParquetColumn {
  name: string;
  data: unknown[];
  /** "STRING" | "INT64" | "IMAGE" (HF struct<bytes: binary, path: string>) | "STRING_LIST" */
  kind: "STRING" | "INT64" | "IMAGE" | "STRING_LIST";
}

/** Writes a parquet file with hyparquet-writer, in the Hugging Face layout (image = struct<bytes,path>). */
export function writeParquet(file: string, columns: ParquetColumn[], codec: "SNAPPY" | "ZSTD" | "UNCOMPRESSED" = "SNAPPY", rowGroupSize?: number): void {
  const schema: any[] = [{ name: "root", num_children: columns.length }];
  for (const c of columns) {
    if (c.kind === "IMAGE") {
      schema.push({ name: c.name, repetition_type: "OPTIONAL", num_children: 2 });
      schema.push({ name: "bytes", type: "BYTE_ARRAY", repetition_type: "OPTIONAL" });
      schema.push({ name: "path", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" });
    } else if (c.kind === "STRING_LIST") {
      schema.push({ name: c.name, repetition_type: "OPTIONAL", converted_type: "LIST", num_children: 1 });
      schema.push({ name: "list", repetition_type: "REPEATED", num_children: 1 });
      schema.push({ name: "element", type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" });
    } else if (c.kind === "INT64") schema.push({ name: c.name, type: "INT64", repetition_type: "OPTIONAL" });
    else schema.push({ name: c.name, type: "BYTE_ARRAY", converted_type: "UTF8", repetition_type: "OPTIONAL" });
  }
  const buf = parquetWriteBuffer({
    columnData: columns.map((c) => ({ name: c.name, data: c.data as any })),
    schema,
    codec,
    compressors: codec === "ZSTD" ? { ZSTD: zstdStored } : undefined,
    rowGroupSize,
  } as any);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, new Uint8Array(buf));
}
