import Ajv, { type ValidateFunction } from "ajv";
import type { Sample } from "./types";

/**
 * JSON Schema (draft-07 subset, as ajv runs it) of {@link Sample}. `image.bytes` uses the custom
 * keyword `uint8array` (a Uint8Array instance), since JSON Schema has no binary type.
 */
export const sampleJsonSchema = {
  $id: "https://rarl-ts/schemas/sample.json",
  type: "object",
  required: ["id", "image", "question", "answer", "answer_type", "source"],
  additionalProperties: false,
  properties: {
    id: { type: "string", minLength: 1 },
    image: {
      oneOf: [
        {
          type: "object",
          required: ["path"],
          additionalProperties: false,
          properties: { path: { type: "string", minLength: 1 } },
        },
        {
          type: "object",
          required: ["bytes"],
          additionalProperties: false,
          properties: { bytes: { uint8array: true } },
        },
      ],
    },
    question: { type: "string", minLength: 1 },
    answer: { type: "string" },
    reasoning: { type: "string" },
    answer_type: { enum: ["closed", "open", "choice"] },
    choices: { type: "array", items: { type: "string" } },
    modality: { type: "string" },
    source: { type: "string", minLength: 1 },
    split: { type: "string" },
    extra: { type: "object" },
  },
  // choice questions need at least two choices
  anyOf: [
    { properties: { answer_type: { enum: ["closed", "open"] } } },
    { required: ["choices"], properties: { choices: { type: "array", minItems: 2 } } },
  ],
} as const;

let validator: ValidateFunction | undefined;

function getValidator(): ValidateFunction {
  if (!validator) {
    const ajv = new Ajv({ allErrors: false, strict: true });
    ajv.addKeyword({
      keyword: "uint8array",
      schemaType: "boolean",
      validate: (want: boolean, data: unknown) => (data instanceof Uint8Array) === want,
      errors: false,
    });
    validator = ajv.compile(sampleJsonSchema);
  }
  return validator;
}

/** Validates a sample; returns null when valid, otherwise a one-line description of the first problem. */
export function sampleProblem(sample: unknown): string | null {
  const v = getValidator();
  if (v(sample)) return null;
  const e = v.errors?.[0];
  if (!e) return "invalid sample";
  const at = e.instancePath ? e.instancePath.slice(1).replace(/\//g, ".") : "(sample)";
  const extra = e.keyword === "additionalProperties" ? ` (${(e.params as any).additionalProperty})` : "";
  return `field ${at} ${e.message ?? "is invalid"}${extra}`;
}

/** Type guard form of {@link sampleProblem}. */
export function isSample(x: unknown): x is Sample {
  return sampleProblem(x) === null;
}
