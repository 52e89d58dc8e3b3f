import { normalizeAnswer } from "./normalize";
import type { TextSimilarity } from "./types";

/**
 * Lexical token F1 (SQuAD-style): both texts normalised with normalizeAnswer and split on spaces; F1 of the multiset
 * overlap. Both empty -> 1; one empty -> 0. Used only when a config asks for `"scorer": "lexical-f1"`.
 */
export function tokenF1(candidate: string, reference: string): number {
  const c = normalizeAnswer(candidate).split(" ").filter(Boolean);
  const r = normalizeAnswer(reference).split(" ").filter(Boolean);
  if (c.length === 0 && r.length === 0) return 1;
  if (c.length === 0 || r.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const w of r) counts.set(w, (counts.get(w) ?? 0) + 1);
  let common = 0;
  for (const w of c) {
    const k = counts.get(w) ?? 0;
    if (k > 0) {
      common++;
      counts.set(w, k - 1);
    }
  }
  if (common === 0) return 0;
  const p = common / c.length;
  const rec = common / r.length;
  return (2 * p * rec) / (p + rec);
}

/** The lexical fallback scorer (token F1); no model needed. */
export const lexicalF1: TextSimilarity = {
  name: "lexical-f1",
  async score(candidates, references) {
    return candidates.map((c, i) => tokenF1(c, references[i]));
  },
};
