import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { SafetensorsError } from "../errors";
import { bf16ToF32, DTYPE_SIZE, f16ToF32, isDtype, type SafetensorsDtype, type TensorArray } from "./dtypes";

/** Upper bound on the JSON header length (the reference Rust implementation uses 100 MB too). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Dtype, shape and location of one tensor. */
export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte length of the tensor's data. */
  byteLength: number;
}

/** A decoded tensor. F32/F16/BF16 -> Float32Array, I64 -> BigInt64Array, I32 -> Int32Array, U8/BOOL -> Uint8Array. */
export interface TensorData {
  dtype: SafetensorsDtype;
  shape: number[];
  data: TensorArray;
}

/** Read access to the tensors of one safetensors file or one sharded checkpoint. Reads are lazy, tensor by tensor. */
export interface TensorSource {
  /** The file (or checkpoint directory) read. */
  readonly path: string;
  /** The `__metadata__` string map (merged over shards for a checkpoint; the index's `metadata` is not included). */
  readonly metadata: Record<string, string>;
  /** Tensor names, sorted. */
  keys(): string[];
  has(name: string): boolean;
  /** Dtype and shape without reading the data. Throws SafetensorsError for an unknown name. */
  info(name: string): TensorInfo;
  /** Reads and decodes one tensor from disk. */
  read(name: string): TensorData;
  /** Raw little-endian bytes of one tensor, as stored. */
  readRaw(name: string): Uint8Array;
  /** Releases resources (file handles are opened per read, so this only marks the source closed). */
  close(): void;
}

interface Entry extends TensorInfo {
  begin: number;
  end: number;
}

/** Random-access bytes: a file (positioned reads) or an in-memory buffer. */
interface ByteSource {
  readonly size: number;
  read(pos: number, len: number): Uint8Array;
}

function fail(file: string, tensor: string | undefined, code: string, what: string, cause?: unknown): never {
  const where = tensor !== undefined ? `${file}: tensor "${tensor}": ` : `${file}: `;
  throw new SafetensorsError(`${where}${what}`, { code, details: { file, tensor }, cause });
}

class FileBytes implements ByteSource {
  readonly size: number;
  constructor(private readonly file: string) {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (e) {
      fail(file, undefined, "SAFETENSORS_IO", `cannot open: ${(e as Error).message}`, e);
    }
    if (!st.isFile()) fail(file, undefined, "SAFETENSORS_IO", "not a regular file");
    this.size = st.size;
  }
  read(pos: number, len: number): Uint8Array {
    const buf = new Uint8Array(len);
    let fd: number | undefined;
    try {
      fd = fs.openSync(this.file, "r");
      let got = 0;
      while (got < len) {
        // readSync takes at most 2^31-1 bytes per call: read big tensors in 1 GiB pieces
        const n = fs.readSync(fd, buf, got, Math.min(len - got, 2 ** 30), pos + got);
        if (n === 0) break;
        got += n;
      }
      if (got !== len) throw new Error(`short read: wanted ${len} bytes at ${pos}, got ${got} (file changed on disk?)`);
    } catch (e) {
      fail(this.file, undefined, "SAFETENSORS_IO", `read failed: ${(e as Error).message}`, e);
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    return buf;
  }
}

class MemoryBytes implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.length;
  }
  read(pos: number, len: number): Uint8Array {
    return this.bytes.slice(pos, pos + len);
  }
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isIndex(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

/** Validates a parsed header against the data-section size; returns entries sorted by name. */
function validateHeader(
  file: string,
  header: unknown,
  dataSize: number,
): { entries: Map<string, Entry>; metadata: Record<string, string> } {
  if (!isPlainObject(header)) fail(file, undefined, "SAFETENSORS_HEADER_JSON", "header is not a JSON object");
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  const names: string[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      if (!isPlainObject(raw)) fail(file, undefined, "SAFETENSORS_METADATA", "__metadata__ must be an object of strings");
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string") fail(file, undefined, "SAFETENSORS_METADATA", `__metadata__["${k}"] is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (!isPlainObject(raw)) fail(file, name, "SAFETENSORS_ENTRY", "entry is not an object");
    const { dtype, shape, data_offsets: offs } = raw;
    if (!isDtype(dtype)) {
      fail(file, name, "SAFETENSORS_DTYPE", `unsupported dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(DTYPE_SIZE).join(", ")})`);
    }
    if (!Array.isArray(shape) || !shape.every(isIndex)) {
      fail(file, name, "SAFETENSORS_SHAPE", `shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !isIndex(offs[0]) || !isIndex(offs[1]) || offs[0] > offs[1]) {
      fail(file, name, "SAFETENSORS_OFFSETS", `data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end > dataSize) {
      fail(file, name, "SAFETENSORS_OFFSETS", `data_offsets [${begin}, ${end}] run past the data section (${dataSize} bytes)`);
    }
    let count = 1;
    for (const d of shape as number[]) {
      count *= d;
      if (count > dataSize) break; // already too big; avoids overflow on hostile shapes
    }
    const byteLength = end - begin;
    if (count * DTYPE_SIZE[dtype] !== byteLength) {
      fail(
        file,
        name,
        "SAFETENSORS_SIZE",
        `shape [${(shape as number[]).join(", ")}] x ${dtype} (${DTYPE_SIZE[dtype]} bytes) does not match the ${byteLength} bytes of data_offsets [${begin}, ${end}]`,
      );
    }
    entries.push({ dtype, shape: [...(shape as number[])], byteLength, begin, end });
    names.push(name);
  }
  const order = entries.map((_, i) => i).sort((a, b) => entries[a].begin - entries[b].begin || entries[a].end - entries[b].end);
  let prevEnd = 0;
  let prevName: string | undefined;
  for (const i of order) {
    const e = entries[i];
    if (e.byteLength > 0 && e.begin < prevEnd) {
      fail(file, names[i], "SAFETENSORS_OVERLAP", `data_offsets [${e.begin}, ${e.end}] overlap tensor "${prevName}" (ends at ${prevEnd})`);
    }
    if (e.end > prevEnd) {
      prevEnd = e.end;
      prevName = names[i];
    }
  }
  const map = new Map<string, Entry>();
  for (const i of names.map((_, i) => i).sort((a, b) => (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : 0))) {
    map.set(names[i], entries[i]);
  }
  return { entries: map, metadata };
}

function decode(file: string, name: string, e: Entry, raw: Uint8Array): TensorArray {
  const n = e.byteLength / DTYPE_SIZE[e.dtype];
  // `raw` is a fresh, aligned buffer of exactly byteLength bytes.
  switch (e.dtype) {
    case "F32":
      return new Float32Array(raw.buffer, raw.byteOffset, n);
    case "BF16":
      return bf16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, n));
    case "F16":
      return f16ToF32(new Uint16Array(raw.buffer, raw.byteOffset, n));
    case "I64":
      return new BigInt64Array(raw.buffer, raw.byteOffset, n);
    case "I32":
      return new Int32Array(raw.buffer, raw.byteOffset, n);
    case "U8":
      return raw;
    case "BOOL":
      for (let i = 0; i < raw.length; i++) {
        if (raw[i] > 1) fail(file, name, "SAFETENSORS_BOOL", `BOOL element ${i} has byte value ${raw[i]} (expected 0 or 1)`);
      }
      return raw;
  }
}

class SafetensorsFile implements TensorSource {
  readonly metadata: Record<string, string>;
  private readonly entries: Map<string, Entry>;
  private readonly dataStart: number;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly bytes: ByteSource,
  ) {
    if (os.endianness() !== "LE") fail(path, undefined, "SAFETENSORS_ENDIAN", "big-endian hosts are not supported");
    if (bytes.size < 8) fail(path, undefined, "SAFETENSORS_TRUNCATED", `file is ${bytes.size} bytes, shorter than the 8-byte header length`);
    const lenBytes = bytes.read(0, 8);
    const n = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER_BYTES)) fail(path, undefined, "SAFETENSORS_HEADER_LENGTH", `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    const headerLen = Number(n);
    if (headerLen > bytes.size - 8) {
      fail(path, undefined, "SAFETENSORS_HEADER_LENGTH", `header length ${headerLen} runs past the end of the ${bytes.size}-byte file`);
    }
    if (headerLen < 2) fail(path, undefined, "SAFETENSORS_HEADER_LENGTH", `header length ${headerLen} is too short for a JSON object`);
    let header: unknown;
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.read(8, headerLen));
      header = JSON.parse(text);
    } catch (e) {
      if (e instanceof SafetensorsError) throw e;
      fail(path, undefined, "SAFETENSORS_HEADER_JSON", `header is not valid UTF-8 JSON: ${(e as Error).message}`, e);
    }
    this.dataStart = 8 + headerLen;
    const v = validateHeader(path, header, bytes.size - this.dataStart);
    this.entries = v.entries;
    this.metadata = v.metadata;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }
  has(name: string): boolean {
    return this.entries.has(name);
  }
  private entry(name: string): Entry {
    if (this.closed) fail(this.path, name, "SAFETENSORS_CLOSED", "source is closed");
    const e = this.entries.get(name);
    if (!e) fail(this.path, name, "SAFETENSORS_UNKNOWN_TENSOR", `no such tensor (file has ${this.entries.size})`);
    return e;
  }
  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: [...e.shape], byteLength: e.byteLength };
  }
  readRaw(name: string): Uint8Array {
    const e = this.entry(name);
    try {
      return this.bytes.read(this.dataStart + e.begin, e.byteLength);
    } catch (err) {
      if (err instanceof SafetensorsError) fail(this.path, name, err.code, err.message.replace(`${this.path}: `, ""), err);
      throw err;
    }
  }
  read(name: string): TensorData {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: [...e.shape], data: decode(this.path, name, e, this.readRaw(name)) };
  }
  close(): void {
    this.closed = true;
  }
}

/**
 * Opens one .safetensors file lazily: only the 8-byte length and the JSON header are read now
 * (after validating the length against a 100 MB bound and the file size); each `read(name)`
 * does one positioned read of that tensor's bytes. Every failure is a SafetensorsError.
 */
export function openSafetensors(file: string): TensorSource {
  return new SafetensorsFile(file, new FileBytes(file));
}

/** Same as {@link openSafetensors} for bytes already in memory (`label` names them in errors). */
export function parseSafetensors(bytes: Uint8Array, label = "<buffer>"): TensorSource {
  return new SafetensorsFile(label, new MemoryBytes(bytes));
}

/** Options of {@link openCheckpoint}. */
export interface OpenCheckpointOptions {
  /** Weight file name inside the directory. Default "model.safetensors"; its shard index is `<name>.index.json`. */
  fileName?: string;
}

class ShardedCheckpoint implements TensorSource {
  readonly metadata: Record<string, string> = {};
  private readonly shards = new Map<string, TensorSource>();
  constructor(
    readonly path: string,
    private readonly dir: string,
    private readonly weightMap: Map<string, string>,
  ) {
    for (const shard of new Set(weightMap.values())) Object.assign(this.metadata, this.shard(shard).metadata);
  }
  private shard(file: string): TensorSource {
    let s = this.shards.get(file);
    if (!s) {
      s = openSafetensors(path.join(this.dir, file));
      this.shards.set(file, s);
    }
    return s;
  }
  private locate(name: string): TensorSource {
    const file = this.weightMap.get(name);
    if (file === undefined) fail(this.path, name, "SAFETENSORS_UNKNOWN_TENSOR", `no such tensor in the index (${this.weightMap.size} tensors)`);
    const s = this.shard(file);
    if (!s.has(name)) fail(s.path, name, "SAFETENSORS_INDEX", `the index maps this tensor to ${file}, which does not contain it`);
    return s;
  }
  keys(): string[] {
    return [...this.weightMap.keys()].sort();
  }
  has(name: string): boolean {
    return this.weightMap.has(name);
  }
  info(name: string): TensorInfo {
    return this.locate(name).info(name);
  }
  read(name: string): TensorData {
    return this.locate(name).read(name);
  }
  readRaw(name: string): Uint8Array {
    return this.locate(name).readRaw(name);
  }
  close(): void {
    for (const s of this.shards.values()) s.close();
  }
}

/**
 * Opens a Hugging Face checkpoint directory: `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` (`weight_map`: tensor name -> shard file). Shard headers are read
 * when the checkpoint is opened (to validate them); tensor data is read per `read(name)`.
 * A path to a single .safetensors file is accepted too.
 */
export function openCheckpoint(dir: string, opts: OpenCheckpointOptions = {}): TensorSource {
  const fileName = opts.fileName ?? "model.safetensors";
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    fail(dir, undefined, "SAFETENSORS_IO", `cannot open checkpoint: ${(e as Error).message}`, e);
  }
  if (st.isFile()) return openSafetensors(dir);
  const indexPath = path.join(dir, `${fileName}.index.json`);
  if (fs.existsSync(indexPath)) {
    let index: unknown;
    try {
      index = JSON.parse(fs.readFileSync(indexPath, "utf8"));
    } catch (e) {
      fail(indexPath, undefined, "SAFETENSORS_INDEX", `index is not valid JSON: ${(e as Error).message}`, e);
    }
    const wm = isPlainObject(index) ? index.weight_map : undefined;
    if (!isPlainObject(wm)) fail(indexPath, undefined, "SAFETENSORS_INDEX", 'index has no "weight_map" object');
    const weightMap = new Map<string, string>();
    for (const [name, file] of Object.entries(wm)) {
      if (typeof file !== "string" || file.includes("/") || file.includes("\\") || file === "..") {
        fail(indexPath, name, "SAFETENSORS_INDEX", `weight_map entry must be a shard file name in the same directory, got ${JSON.stringify(file)}`);
      }
      weightMap.set(name, file);
    }
    return new ShardedCheckpoint(dir, dir, weightMap);
  }
  const single = path.join(dir, fileName);
  if (fs.existsSync(single)) return openSafetensors(single);
  fail(dir, undefined, "SAFETENSORS_IO", `no ${fileName} or ${fileName}.index.json in this directory`);
}
