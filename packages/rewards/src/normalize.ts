/**
 * Answer normalisation for exact-match rewards: Unicode NFKD with combining marks removed, lower case, punctuation
 * replaced by spaces, the articles "a", "an", "the" removed, whitespace collapsed.
 */
export function normalizeAnswer(s: string): string {
  return s
    .normalize("NFKD")
    .replace(/\p{M}+/gu, "")
    .toLowerCase()
    .replace(/[\p{P}\p{S}]+/gu, " ")
    .split(/\s+/)
    .filter((w) => w.length > 0 && w !== "a" && w !== "an" && w !== "the")
    .join(" ");
}

/** Words (after normalizeAnswer) that mean "yes" when they are the whole answer or its first word. */
export const YES_WORDS: ReadonlySet<string> = new Set(["yes", "y", "yeah", "yep", "true", "correct", "positive", "present", "affirmative"]);
/** Words that mean "no" when they are the whole answer or its first word. */
export const NO_WORDS: ReadonlySet<string> = new Set(["no", "n", "nope", "false", "incorrect", "negative", "absent", "none", "not"]);

/**
 * Maps a yes/no answer to "yes" or "no": the normalised answer's first word in YES_WORDS / NO_WORDS
 * ("Yes, there is a fracture." -> "yes"; "Not present" -> "no"). Anything else -> null.
 */
export function canonicalYesNo(s: string): "yes" | "no" | null {
  const n = normalizeAnswer(s);
  if (n.length === 0) return null;
  const first = n.split(" ", 1)[0];
  if (YES_WORDS.has(first)) return "yes";
  if (NO_WORDS.has(first)) return "no";
  return null;
}

/**
 * True when a reference is a yes/no answer: its normalised text is a single YES_WORDS / NO_WORDS word ("Yes", "no.").
 * "No abnormality", "None seen" or "Not present" are open answers (a finding), not yes/no: any prediction starting with
 * "No" must not match them.
 */
export function isYesNoReference(ref: string): boolean {
  const n = normalizeAnswer(ref);
  return n.length > 0 && !n.includes(" ") && canonicalYesNo(n) !== null;
}

/** Upper bound on the expansions of one reference (2^MAX_OPTIONAL_GROUPS per alternative). */
export const MAX_OPTIONAL_GROUPS = 6;

/**
 * Expands a VQA-Med 2019 style reference: alternatives separated by '#', and parts in parentheses optional
 * ("(left) kidney#renal" -> ["left kidney", "kidney", "renal"]). At most MAX_OPTIONAL_GROUPS groups per alternative
 * are expanded (further groups are kept with their content). Whitespace is collapsed; empty results are dropped;
 * the result is never empty for a non-empty reference (the reference itself is the fallback).
 */
export function expandReference(ref: string): string[] {
  const out = new Set<string>();
  const clean = (s: string) => s.replace(/\s+/g, " ").trim();
  for (const alt of ref.split("#")) {
    const parts = alt.split(/(\([^()]*\))/);
    const groups = parts.map((_p, i) => (i % 2 === 1 ? i : -1)).filter((i) => i >= 0);
    const expand = groups.slice(0, MAX_OPTIONAL_GROUPS);
    for (let mask = 0; mask < 1 << expand.length; mask++) {
      const pieces = parts.map((p, i) => {
        if (i % 2 === 0) return p;
        const k = expand.indexOf(i);
        return k >= 0 && (mask & (1 << k)) === 0 ? " " : p.slice(1, -1);
      });
      const s = clean(pieces.join(""));
      if (s.length > 0) out.add(s);
    }
  }
  if (out.size === 0 && ref.trim().length > 0) out.add(ref.trim());
  return [...out];
}

/**
 * The option a multiple-choice answer names, as a 0-based index: an option letter ("B", "(b)", "B.", "B) spleen",
 * "option B", "answer: B") or the option's text (normalised equality), else null.
 */
export function matchChoice(answer: string, choices: readonly string[]): number | null {
  const t = answer.normalize("NFKC").trim();
  const m = /^(?:(?:the\s+)?(?:correct\s+)?(?:option|answer|choice)(?:\s+is)?\s*:?\s*)?(?:\(([A-Za-z])\)|([A-Za-z])(?:([.):])|(?=\s)|$))\s*([\s\S]*)$/i.exec(t);
  if (m) {
    const idx = (m[1] ?? m[2]).toUpperCase().charCodeAt(0) - 65;
    const punctuated = m[1] !== undefined || m[3] !== undefined;
    const rest = m[4];
    // "a mass" is not option A: a bare letter followed by text counts only if the text is that option's text.
    if (idx < choices.length && (rest.length === 0 || punctuated || normalizeAnswer(rest) === normalizeAnswer(choices[idx]))) return idx;
  }
  const n = normalizeAnswer(t);
  if (n.length === 0) return null;
  const hits = choices.map((c, i) => (normalizeAnswer(c) === n ? i : -1)).filter((i) => i >= 0);
  return hits.length > 0 ? hits[0] : null;
}
