import { tokenF1 } from "./lexical";
import { normalizeAnswer } from "./normalize";
import type { TextSimilarity } from "./types";

/**
 * The structured facts of a finding: imaging modality, whether there is a lesion, the patient side and the size of
 * the lesion. A key is absent when the text does not state it; "conflict" when the text states both values (e.g.
 * "left lung … right lung"), which never matches a reference.
 */
export interface Facts {
  modality?: "x-ray" | "ct" | "mri" | "conflict";
  lesion?: boolean | "conflict";
  side?: "left" | "right" | "conflict";
  size?: "small" | "large" | "conflict";
}

export const FACT_KEYS = ["modality", "lesion", "side", "size"] as const;

function one<T extends string | boolean>(found: Set<T>): T | "conflict" | undefined {
  if (found.size === 0) return undefined;
  if (found.size > 1) return "conflict";
  return [...found][0];
}

/** Negative findings ("no lesion", "no abnormality", "normal", "clear", "healthy", "no bright spot"). */
const NEGATIVE = /\b(?:no|without|not any)\s+(?:[a-z]+\s+){0,2}?(?:lesion|lesions|abnormality|abnormalities|bright spot|nodule|mass|opacity)\b|\b(?:normal|healthy|unremarkable)\b/g;
/** Positive findings ("lesion", "abnormal", "bright spot", "nodule", "mass"). */
const POSITIVE = /\b(?:lesion|lesions|abnormal|abnormality|bright spot|nodule|mass|opacity|blob)\b/;

/**
 * Parses the facts a text states. Pure.
 * - modality: the words X-ray / CT / MRI (also "xray", "radiograph", "computed tomography", "magnetic resonance").
 * - lesion: false when it says "no lesion", "no abnormality", "normal", "healthy"…; true when it names a lesion,
 *   a bright spot, a nodule or says "abnormal" outside those negations; both -> "conflict".
 * - side: the patient side, read from "left/right lung|hemisphere|side" and "patient's left/right"; the image halves
 *   ("right half of the image") are not the patient side and are ignored. A text that is only "left" or "right" (or
 *   "on the left") states that side.
 * - size: "small" / "large" (also "big", "tiny").
 */
export function parseFacts(text: string): Facts {
  const t = ` ${normalizeAnswer(text.replace(/x-ray/gi, "xray"))} `;
  const f: Facts = {};
  const mods = new Set<"x-ray" | "ct" | "mri">();
  if (/\b(?:xray|radiograph|radiography)\b/.test(t)) mods.add("x-ray");
  if (/\b(?:ct|computed tomography)\b/.test(t)) mods.add("ct");
  if (/\b(?:mri|mr|magnetic resonance)\b/.test(t)) mods.add("mri");
  const m = one(mods);
  if (m !== undefined) f.modality = m;

  const lesion = new Set<boolean>();
  // "abnormal" is a positive word but "abnormality" after "no" is negative: strip negations first.
  const rest = t.replace(NEGATIVE, (s) => {
    lesion.add(false);
    return " ".repeat(s.length);
  });
  // "both sides are clear" / "other side is clear" describe the healthy side only when nothing else is said
  if (POSITIVE.test(rest)) lesion.add(true);
  if (lesion.size === 0 && /\bboth (?:sides|lungs|hemispheres|lung fields) (?:are )?clear\b/.test(t)) lesion.add(false);
  const l = one(lesion);
  if (l !== undefined) f.lesion = l;

  const sides = new Set<"left" | "right">();
  for (const x of t.matchAll(/\b(left|right)\s+(?:lung|lungs|hemisphere|side|lobe|kidney|lung field)\b/g)) sides.add(x[1] as "left" | "right");
  for (const x of t.matchAll(/\bpatient s\s+(left|right)\b/g)) sides.add(x[1] as "left" | "right");
  for (const x of t.matchAll(/\bon\s+(?:the\s+)?(left|right)\b(?!\s+half)/g)) sides.add(x[1] as "left" | "right");
  const bare = t.trim();
  if (bare === "left" || bare === "right") sides.add(bare);
  const s = one(sides);
  if (s !== undefined) f.side = s;

  const sizes = new Set<"small" | "large">();
  if (/\b(?:small|tiny)\b/.test(t)) sizes.add("small");
  if (/\b(?:large|big)\b/.test(t)) sizes.add("large");
  const z = one(sizes);
  if (z !== undefined) f.size = z;
  return f;
}

/** Number of facts stated. */
export function factCount(f: Facts): number {
  return FACT_KEYS.filter((k) => f[k] !== undefined).length;
}

/**
 * The facts of a sample from its ground-truth fields: `modality`, and `extra.lesion`, `extra.side`,
 * `extra.lesion_size` (as written by `rarl data synth`). Fields that are missing are absent; side and size only
 * with a lesion. Pure.
 */
export function sampleFacts(sample: { modality?: unknown; extra?: unknown }): Facts {
  const f: Facts = {};
  const m = typeof sample.modality === "string" ? parseFacts(sample.modality).modality : undefined;
  if (m !== undefined && m !== "conflict") f.modality = m;
  const x = sample.extra && typeof sample.extra === "object" ? (sample.extra as Record<string, unknown>) : {};
  if (typeof x.lesion === "boolean") {
    f.lesion = x.lesion;
    if (x.lesion && (x.side === "left" || x.side === "right")) f.side = x.side;
    if (x.lesion && (x.lesion_size === "small" || x.lesion_size === "large")) f.size = x.lesion_size;
  }
  return f;
}

/**
 * Share of the reference's facts that the prediction states with the same value, in [0, 1]: a fact the prediction
 * omits or states as "conflict" counts as wrong. When the reference has no lesion, a prediction that places a lesion
 * (a side or size) is wrong on the lesion fact already. null when the reference states no fact. Pure.
 */
export function factAgreement(pred: Facts, ref: Facts): number | null {
  const keys = FACT_KEYS.filter((k) => ref[k] !== undefined && ref[k] !== "conflict");
  if (keys.length === 0) return null;
  let ok = 0;
  for (const k of keys) if (pred[k] !== undefined && pred[k] === ref[k]) ok++;
  return ok / keys.length;
}

/**
 * Structured-fact similarity (`"scorer": "structured-facts"`): the {@link factAgreement} of the facts parsed from the
 * candidate and from the reference; token F1 ({@link tokenF1}) when the reference states no fact. Unlike unigram
 * overlap it scores "small lesion in the right lung" against "large lesion in the left lung" 1/3, not 0.8.
 * `scoreAgainst` compares with ground-truth facts (a sample's fields) instead of a reference text.
 */
export const factsSimilarity: TextSimilarity & { scoreAgainst(candidate: string, facts: Facts): number | null } = {
  name: "structured-facts",
  async score(candidates, references) {
    return candidates.map((c, i) => factAgreement(parseFacts(c), parseFacts(references[i])) ?? tokenF1(c, references[i]));
  },
  scoreAgainst(candidate, facts) {
    return factAgreement(parseFacts(candidate), facts);
  },
};
