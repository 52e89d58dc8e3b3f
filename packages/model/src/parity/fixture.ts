import fs from "node:fs";
import path from "node:path";
import { openSafetensors, type TensorSource } from "@rarl/core";
import { ProcessorError } from "../qwen2_vl/processor_errors";

/** A reference tensor as numbers (integers for I64/I32/U8/BOOL). */
export interface RefTensor {
  shape: number[];
  data: Float32Array | number[];
  isInteger: boolean;
}

/** A parity fixture folder laid out like test-fixtures/qwen2vl-tiny. */
export class ParityFixture {
  readonly outputsJson: any;
  readonly outputs: TensorSource | null;
  readonly imageRef: TensorSource | null;
  readonly config: any;

  constructor(readonly dir: string) {
    const jsonPath = path.join(dir, "reference", "outputs.json");
    if (!fs.existsSync(jsonPath)) {
      throw new ProcessorError(`${jsonPath}: reference outputs not found (expected a folder laid out like qwen2vl-tiny)`, {
        code: "PROCESSOR_MISSING_FILE",
        details: { file: jsonPath },
      });
    }
    try {
      this.outputsJson = JSON.parse(fs.readFileSync(jsonPath, "utf8"));
    } catch (e) {
      throw new ProcessorError(`${jsonPath}: not valid JSON: ${(e as Error).message}`, { code: "PROCESSOR_CORRUPT_FILE", details: { file: jsonPath }, cause: e });
    }
    const st = path.join(dir, "reference", "outputs.safetensors");
    this.outputs = fs.existsSync(st) ? openSafetensors(st) : null;
    const ip = path.join(dir, "reference", "image_processor.safetensors");
    this.imageRef = fs.existsSync(ip) ? openSafetensors(ip) : null;
    const cfgPath = path.join(dir, "config.json");
    this.config = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
  }

  /** Case names of outputs.safetensors (prefix before the first "."), in file order of first appearance. */
  tensorCases(): string[] {
    const names = new Set<string>();
    for (const k of this.outputs?.keys() ?? []) {
      const i = k.indexOf(".");
      if (i > 0) names.add(k.slice(0, i));
    }
    return [...names];
  }

  /** Field names of one case (`<case>.<field>` keys with the prefix removed). */
  fields(caseName: string): string[] {
    const p = `${caseName}.`;
    return (this.outputs?.keys() ?? []).filter((k) => k.startsWith(p)).map((k) => k.slice(p.length));
  }

  has(key: string): boolean {
    return this.outputs?.has(key) ?? false;
  }

  read(key: string, source: TensorSource | null = this.outputs): RefTensor {
    if (!source) throw new ProcessorError(`reference tensor ${key}: no reference file`, { code: "PROCESSOR_MISSING_FILE" });
    const t = source.read(key);
    const isInteger = !(t.dtype === "F32" || t.dtype === "F16" || t.dtype === "BF16");
    return { shape: t.shape, data: isInteger ? Array.from(t.data as ArrayLike<number | bigint>, Number) : (t.data as Float32Array), isInteger };
  }

  /** Image names with a file: outputs.json `images` (name -> {file}) plus images/*.png. */
  imageFiles(): Map<string, string> {
    const m = new Map<string, string>();
    const imgs = this.outputsJson?.images ?? {};
    for (const [name, v] of Object.entries<any>(imgs)) if (typeof v?.file === "string") m.set(name, path.join(this.dir, v.file));
    const d = path.join(this.dir, "images");
    if (fs.existsSync(d)) {
      for (const f of fs.readdirSync(d).sort()) {
        const name = f.replace(/\.[^.]+$/, "");
        if (!m.has(name)) m.set(name, path.join(d, f));
      }
    }
    return m;
  }

  /** image_token_id of config.json (151655 for Qwen2-VL). */
  get imageTokenId(): number {
    return this.config.image_token_id ?? 151655;
  }
}
