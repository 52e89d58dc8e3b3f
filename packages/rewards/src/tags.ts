/** The four tags of the RARL output format. Matching is exact and case-sensitive. */
export const TAGS = ["<think>", "</think>", "<answer>", "</answer>"] as const;


/** True when some of the four tags occur in the text. */
export function hasAnyTag(text: string): boolean {
  return TAGS.some((t) => text.includes(t));
}

/**
 * Parses the exact format `<think>T</think><answer>A</answer>` (whitespace allowed before, between and after, nothing
 * else outside; T and A must not contain any of the four tags). Returns null when the text is not in that form.
 */
export function parseExactFormat(text: string): { think: string; answer: string } | null {
  // Linear time (no backtracking regex): each tag must occur exactly once, in order, with only whitespace outside.
  const pos: number[] = [];
  for (const t of TAGS) {
    const i = text.indexOf(t);
    if (i < 0 || text.indexOf(t, i + 1) >= 0) return null;
    pos.push(i);
  }
  const [ot, ct, oa, ca] = pos;
  if (!(ot < ct && ct < oa && oa < ca)) return null;
  const ws = (s: string) => s.trim().length === 0;
  if (!ws(text.slice(0, ot)) || !ws(text.slice(ct + 8, oa)) || !ws(text.slice(ca + 9))) return null;
  const think = text.slice(ot + 7, ct);
  const answer = text.slice(oa + 8, ca);
  if (hasAnyTag(think) || hasAnyTag(answer)) return null;
  return { think, answer };
}

/**
 * The text between the first `<think>` and the next `</think>`, with any other tag strings inside removed (nested
 * `<think>`), trimmed; null when there is no such pair.
 */
export function extractThink(text: string): string | null {
  const a = text.indexOf("<think>");
  if (a < 0) return null;
  const b = text.indexOf("</think>", a + 7);
  if (b < 0) return null;
  let out = text.slice(a + 7, b);
  for (const t of TAGS) out = out.split(t).join(" ");
  return out.trim();
}

/**
 * The final answer of a completion:
 * - the text between the last `<answer>` and the next `</answer>`;
 * - else, with an unclosed last `<answer>`, the text after it;
 * - else the whole completion with any complete `<think>…</think>` block removed.
 * In every case the four tag strings are removed from the result and it is trimmed.
 */
export function extractAnswer(text: string): string {
  let out: string;
  const a = text.lastIndexOf("<answer>");
  if (a >= 0) {
    const b = text.indexOf("</answer>", a + 8);
    out = b >= 0 ? text.slice(a + 8, b) : text.slice(a + 8);
  } else {
    out = text.replace(/<think>[\s\S]*?<\/think>/g, " ");
  }
  for (const t of TAGS) out = out.split(t).join(" ");
  return out.trim();
}
