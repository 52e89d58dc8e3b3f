import { normalizeAnswer } from "@rarl/rewards";

/** One question's greedy verdict and its G sampled answers with their verdicts (1 correct, 0 wrong). */
export interface HeadroomItem {
  id: string;
  /** Image the question is about (questions on one image are correlated; used by the bootstrap). */
  image?: string;
  greedy: 0 | 1;
  /** The G sampled final answers (as judged). */
  answers: string[];
  /** Their verdicts, same order. */
  correct: Array<0 | 1>;
}

/**
 * Headroom of a policy on a set of questions, before training (what GRPO can learn from its own samples):
 * - `greedy`: accuracy of greedy decoding;
 * - `pass_at_1`: mean over questions of the share of the G samples that are correct (sampled accuracy);
 * - `pass_at_g`: share of questions with at least one correct sample among G;
 * - `maj_at_g`: share of questions whose most frequent normalised sampled answer (ties: the one sampled first) is correct;
 * - `flippable`: share of questions that greedy gets wrong but at least 2 of the G samples get right (those a reward
 *   that prefers the right samples can flip);
 * - `all_equal`: share of questions whose G verdicts are all equal (no learning signal for GRPO: zero advantage).
 */
export interface Headroom {
  n: number;
  g: number;
  greedy: number;
  pass_at_1: number;
  pass_at_g: number;
  maj_at_g: number;
  flippable: number;
  all_equal: number;
}

/** Computes {@link Headroom} (pure). Every item must have the same number G >= 1 of samples. */
export function headroomMetrics(items: HeadroomItem[]): Headroom {
  if (items.length === 0) throw new Error("headroom: no questions");
  const g = items[0].correct.length;
  if (g < 1 || items.some((it) => it.correct.length !== g || it.answers.length !== g)) throw new Error("headroom: every question needs the same number G >= 1 of samples and verdicts");
  let greedy = 0;
  let p1 = 0;
  let pg = 0;
  let maj = 0;
  let flip = 0;
  let eq = 0;
  for (const it of items) {
    const k = it.correct.reduce<number>((a, c) => a + c, 0);
    greedy += it.greedy;
    p1 += k / g;
    if (k > 0) pg++;
    if (it.greedy === 0 && k >= 2) flip++;
    if (k === 0 || k === g) eq++;
    const counts = new Map<string, { n: number; first: number }>();
    it.answers.forEach((a, i) => {
      const key = normalizeAnswer(a);
      const c = counts.get(key);
      if (c) c.n++;
      else counts.set(key, { n: 1, first: i });
    });
    let best = { n: 0, first: 0 };
    for (const c of counts.values()) if (c.n > best.n) best = c;
    maj += it.correct[best.first];
  }
  const n = items.length;
  return { n, g, greedy: greedy / n, pass_at_1: p1 / n, pass_at_g: pg / n, maj_at_g: maj / n, flippable: flip / n, all_equal: eq / n };
}
