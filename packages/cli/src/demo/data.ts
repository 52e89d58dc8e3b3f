import { RarlError, writeFileAtomic } from "@rarl/core";
import { readJsonl } from "../report/io";

/** A demo data file that is not what the demo expects (names the file and the sample). */
export class DemoDataError extends RarlError {}

/**
 * The demo's short reasoning for a synthetic sample: the finding and the radiological-convention step of the
 * synthetic reference reasoning, without its anatomy description sentence (~20 instead of ~75 tokens), so that
 * training and generation fit a few CPU minutes. Derived from the sample's ground truth (`extra`, `modality`).
 */
export function compactReasoning(sample: { modality?: string; extra?: Record<string, unknown> }): string | null {
  const x = sample.extra ?? {};
  const modality = sample.modality ?? "image";
  const organ = modality === "MRI" ? "hemisphere" : "lung";
  if (x.lesion === false) return `${modality}. Both sides are clear, no bright spot. No lesion, normal.`;
  if (x.lesion !== true || (x.side !== "left" && x.side !== "right")) return null;
  const half = x.side === "left" ? "right" : "left";
  const size = x.lesion_size === "large" ? "large" : "small";
  return `${modality}. A ${size} bright spot in the image's ${half} half, the patient's ${x.side} ${organ}. Abnormal.`;
}

/** Rewrites a synthetic samples.jsonl with {@link compactReasoning} (other fields unchanged); returns the count. */
export function compactSamplesFile(src: string, dst: string): number {
  const out = readJsonl(src).map((s, i) => {
    const r = compactReasoning(s as never);
    if (r === null) {
      throw new DemoDataError(`${src}: sample ${i + 1} is not a synthetic sample (extra.lesion/side missing)`, { code: "DEMO_BAD_SAMPLE", details: { file: src, row: i + 1 } });
    }
    return JSON.stringify({ ...s, reasoning: r });
  });
  writeFileAtomic(dst, `${out.join("\n")}\n`);
  return out.length;
}
