import { DatasetError } from "./errors";
import { type ColumnMapping, loadGeneric } from "./formats/generic";
import { loadCvBench, loadHfVqaParquet } from "./formats/parquet";
import { loadRarl } from "./formats/rarl";
import { loadSilvarMed } from "./formats/silvar";
import { loadSlake } from "./formats/slake";
import { loadVqaMed2019 } from "./formats/vqamed2019";
import { loadVqaRad } from "./formats/vqarad";
import { DatasetStream, type FormatRows, type PipelineOptions } from "./pipeline";

/** Every format `loadDataset` reads. */
export const DATASET_FORMATS = [
  "rarl",
  "silvar-med",
  "vqa-rad",
  "vqa-rad-parquet",
  "slake",
  "vqa-med-2019",
  "pathvqa",
  "cv-bench",
  "jsonl",
  "json",
  "csv",
] as const;

export type DatasetFormat = (typeof DATASET_FORMATS)[number];

/** Options of {@link loadDataset}. */
export interface LoadOptions extends PipelineOptions {
  /** The published format (see DATASET_FORMATS and the README's table). */
  format: DatasetFormat;
  /** The dataset file, or its folder (formats with several files: SLAKE, parquet shards, VQA-Med). */
  path: string;
  /** Dataset root that image paths are relative to. Default: the folder of the (first) data file. */
  root?: string;
  /** Image folder under the root for formats that store bare image names (silvar-med, vqa-rad, slake, vqa-med-2019). Default: detected per format. */
  imageDir?: string;
  /** SLAKE question languages kept. Default ["en"] (the paper uses SLAKE English). "all" keeps every language. */
  languages?: readonly string[] | "all";
  /** Column mapping for json/jsonl/csv. Default: identity. */
  mapping?: ColumnMapping;
  /** Source name for json/jsonl/csv rows without a source column. Default "custom". */
  source?: string;
  /** Modality for silvar-med records that carry none. Default: none. */
  modality?: string;
  /** CSV delimiter. Default ",". */
  delimiter?: string;
}

function openFormat(o: LoadOptions): FormatRows {
  switch (o.format) {
    case "rarl":
      return loadRarl(o);
    case "silvar-med":
      return loadSilvarMed(o);
    case "vqa-rad":
      return loadVqaRad(o);
    case "vqa-rad-parquet":
      return loadHfVqaParquet(o, "vqa-rad");
    case "pathvqa":
      return loadHfVqaParquet(o, "pathvqa");
    case "slake":
      return loadSlake(o);
    case "vqa-med-2019":
      return loadVqaMed2019(o);
    case "cv-bench":
      return loadCvBench(o);
    case "jsonl":
    case "json":
    case "csv":
      return loadGeneric(o, o.format);
    default:
      throw new DatasetError(`unknown dataset format ${JSON.stringify((o as { format: unknown }).format)}; expected one of ${DATASET_FORMATS.join(", ")}`, {
        code: "DATASET_BAD_OPTIONS",
      });
  }
}

/**
 * The front door: streams the samples of a dataset in one of the published formats, validated
 * against the common schema, with duplicate-id, image-path and image checks. Bad rows throw a
 * DatasetError naming the file and row, or with `onError: "skip"` are recorded in `stream.skipped`.
 *
 * @example
 * const ds = loadDataset({ format: "slake", path: "data/Slake1.0", onError: "skip" });
 * for await (const s of ds) console.log(s.question, s.answer);
 * console.log(ds.skipped);
 */
export function loadDataset(opts: LoadOptions): DatasetStream {
  if (!(DATASET_FORMATS as readonly string[]).includes(opts.format)) {
    throw new DatasetError(`unknown dataset format ${JSON.stringify(opts.format)}; expected one of ${DATASET_FORMATS.join(", ")}`, {
      code: "DATASET_BAD_OPTIONS",
    });
  }
  return new DatasetStream(() => openFormat(opts), opts);
}
