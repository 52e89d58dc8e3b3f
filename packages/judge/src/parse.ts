import Ajv from "ajv";
import type { Verdict } from "./types";

/** JSON schema of a judge reply when the sample has reference reasoning. */
export const VERDICT_SCHEMA = {
  type: "object",
  properties: {
    evaluation: { type: "string" },
    reasoning_score: { enum: [0, 1] },
    prediction_score: { enum: [0, 1] },
  },
  required: ["evaluation", "reasoning_score", "prediction_score"],
} as const;

/** Schema when the sample has no reference reasoning: reasoning_score may be null or absent (it is discarded). */
export const PREDICTION_ONLY_SCHEMA = {
  type: "object",
  properties: {
    evaluation: { type: "string" },
    reasoning_score: { enum: [0, 1, null] },
    prediction_score: { enum: [0, 1] },
  },
  required: ["evaluation", "prediction_score"],
} as const;

const ajv = new Ajv({ allErrors: true });
const validateFull = ajv.compile(VERDICT_SCHEMA);
const validatePredOnly = ajv.compile(PREDICTION_ONLY_SCHEMA);

/**
 * Finds the JSON object in a judge reply: a ```json fenced block, a bare object, or the first
 * balanced `{...}` inside surrounding prose. Returns the parsed value or undefined. Pure.
 */
export function extractJson(text: string): unknown {
  const candidates: string[] = [];
  const fence = /```(?:json|JSON)?\s*\n?([\s\S]*?)```/g;
  for (let m = fence.exec(text); m; m = fence.exec(text)) candidates.push(m[1]);
  candidates.push(text.trim());
  // Balanced-brace scan (string-aware) for objects embedded in prose.
  for (let start = text.indexOf("{"); start >= 0; start = text.indexOf("{", start + 1)) {
    let depth = 0;
    let inStr = false;
    let esc = false;
    for (let i = start; i < text.length; i++) {
      const c = text[i];
      if (inStr) {
        if (esc) esc = false;
        else if (c === "\\") esc = true;
        else if (c === '"') inStr = false;
        continue;
      }
      if (c === '"') inStr = true;
      else if (c === "{") depth++;
      else if (c === "}") {
        depth--;
        if (depth === 0) {
          candidates.push(text.slice(start, i + 1));
          break;
        }
      }
    }
  }
  for (const c of candidates) {
    try {
      const v = JSON.parse(c);
      if (v !== null && typeof v === "object" && !Array.isArray(v)) return v;
    } catch {
      /* try the next candidate */
    }
  }
  return undefined;
}

/** Outcome of parsing a judge reply. */
export type ParseResult = { ok: true; verdict: Verdict } | { ok: false; reason: string };

/**
 * Extracts and validates a verdict. With `withReasoning` false the reasoning_score is set to null
 * whatever the judge said (the sample has no reference reasoning). Pure.
 */
export function parseVerdict(text: string, withReasoning: boolean): ParseResult {
  const value = extractJson(text);
  if (value === undefined) return { ok: false, reason: "no JSON object found in the reply" };
  const validate = withReasoning ? validateFull : validatePredOnly;
  if (!validate(value)) {
    const msg = (validate.errors ?? [])
      .map((e) => `${e.instancePath || "/"} ${e.message}${e.params && "allowedValues" in e.params ? ` ${JSON.stringify((e.params as any).allowedValues)}` : ""}`)
      .join("; ");
    return { ok: false, reason: `reply does not match the schema: ${msg}` };
  }
  const v = value as any;
  return {
    ok: true,
    verdict: {
      evaluation: v.evaluation,
      reasoning_score: withReasoning ? v.reasoning_score : null,
      prediction_score: v.prediction_score,
    },
  };
}
