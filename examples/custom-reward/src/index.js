// @acme/rarl-reward-x: an example RARL reward plugin, a package of its own.
// Plain ESM + JSDoc types: no build step. A rewards config loads it by package name:
//   { "rewards": [{ "use": "format" }, { "use": "@acme/rarl-reward-x", "weight": 0.5 }] }
// It imports nothing from @rarl/rewards at runtime (only types), so it works with any install layout.

/** @typedef {import("@rarl/rewards").RewardDefinition} RewardDefinition */
/** @typedef {import("@rarl/rewards").RewardSample} RewardSample */

/** Answers up to this many words get the full reward. */
export const MAX_WORDS = 8;

/** Phrases that hedge instead of answering (matched case-insensitively in the answer). */
export const HEDGES = ["not sure", "cannot determine", "can't determine", "unclear", "maybe", "possibly", "i don't know"];

/**
 * The final answer: the text inside the last <answer>…</answer> block, else the whole completion.
 * @param {string} completion
 * @returns {string}
 */
export function answerText(completion) {
  const a = completion.lastIndexOf("<answer>");
  if (a < 0) return completion.trim();
  const b = completion.indexOf("</answer>", a + 8);
  return (b < 0 ? completion.slice(a + 8) : completion.slice(a + 8, b)).trim();
}

/**
 * Concise, committed answers: 0 for an empty or hedging answer; otherwise 1 for answers of at most MAX_WORDS words
 * and MAX_WORDS / words beyond that. Total: any string gives a number in [0, 1].
 * @param {string} completion
 * @param {RewardSample} _sample
 * @returns {number}
 */
export function answerBrevity(completion, _sample) {
  const answer = answerText(String(completion));
  const words = answer.split(/\s+/).filter(Boolean).length;
  if (words === 0) return 0;
  const lower = answer.toLowerCase();
  if (HEDGES.some((h) => lower.includes(h))) return 0;
  return words <= MAX_WORDS ? 1 : MAX_WORDS / words;
}

/** @type {RewardDefinition} */
const reward = { name: "answer-brevity", fn: answerBrevity, description: "concise, committed final answers" };

export default reward;
