import { NON_REASONING_SYSTEM_PROMPT, REASONING_SYSTEM_PROMPT } from "./builtins";
import { TemplateError } from "./errors";
import { renderTemplate, type Template } from "./template";

/**
 * The fields of a dataset sample that prompting needs: a structural subset of @rarl/datasets' common schema
 * (declared here so that this package stays a leaf).
 */
export interface PromptSample {
  id: string;
  question: string;
  answer_type?: "closed" | "open" | "choice";
  /** Option texts of a multiple-choice question, in order (lettered A, B, C, ...). */
  choices?: string[];
  /** Imaging modality, e.g. "CT", "MRI", "X-Ray". */
  modality?: string;
  /** The image(s); only their count matters here (one image slot each). Absent or null: one slot. */
  image?: unknown;
  images?: unknown[];
}

/** A text or image part of a user turn, in the Hugging Face processor form that the Qwen2-VL chat template consumes. */
export type ContentPart = { type: "image" } | { type: "text"; text: string };

/** One chat message. System text is a plain string; the user turn is a list of parts with image slots first. */
export type ChatMessage = { role: "system"; content: string } | { role: "user"; content: ContentPart[] } | { role: "assistant"; content: string };

/** Options of buildPrompt. */
export interface BuildPromptOptions {
  /**
   * System message: a built-in inference prompt by name ("reasoning" | "non-reasoning", RARL §3.3), literal text, or
   * null for none. Default: the template's own `system` (none for the Appendix A training templates).
   */
  system?: "reasoning" | "non-reasoning" | string | null;
  /** Number of image slots. Default: `sample.images.length` when present, else 1. */
  imageCount?: number;
}

/** Formats choices as "A. text" lines. */
export function formatChoices(choices: readonly string[]): string {
  return choices.map((c, i) => `${String.fromCharCode(65 + i)}. ${c}`).join("\n");
}

/**
 * The variable values a sample offers to a template: `question` (with the lettered options appended as
 * "\nOptions:\nA. ..." when the sample has choices and the template does not declare `choices`), `choices`,
 * `modality`, `answer_type`. Only the template's declared variables are passed on.
 */
export function sampleVariables(sample: PromptSample, template: Template): Record<string, string> {
  const hasChoices = Array.isArray(sample.choices) && sample.choices.length > 0;
  const choices = hasChoices ? formatChoices(sample.choices as string[]) : "";
  const all: Record<string, string | undefined> = {
    question: hasChoices && !template.variables.includes("choices") ? `${sample.question}\nOptions:\n${choices}` : sample.question,
    choices: hasChoices ? choices : undefined,
    modality: sample.modality,
    answer_type: sample.answer_type,
  };
  const out: Record<string, string> = {};
  for (const v of template.variables) {
    const value = all[v] ?? (sample as unknown as Record<string, unknown>)[v];
    if (typeof value !== "string")
      throw new TemplateError(`template "${template.name}": sample "${sample.id}" has no value for variable "${v}"`, {
        code: "TEMPLATE_MISSING_VARIABLE",
        details: { template: template.name, variable: v, sample: sample.id },
      });
    out[v] = value;
  }
  return out;
}

/**
 * The full chat message list for a (sample, template) pair:
 * `[{role:"system", content}, {role:"user", content:[{type:"image"}, ..., {type:"text", text}]}]`
 * (the system message only when there is one). Feed it to the Qwen2-VL chat template with add_generation_prompt.
 */
export function buildPrompt(sample: PromptSample, template: Template, opts: BuildPromptOptions = {}): ChatMessage[] {
  const rendered = renderTemplate(template, sampleVariables(sample, template));
  let system: string | undefined = rendered.system;
  if (opts.system === null) system = undefined;
  else if (opts.system === "reasoning") system = REASONING_SYSTEM_PROMPT;
  else if (opts.system === "non-reasoning") system = NON_REASONING_SYSTEM_PROMPT;
  else if (typeof opts.system === "string") system = opts.system;
  const n = opts.imageCount ?? (Array.isArray(sample.images) ? sample.images.length : 1);
  const parts: ContentPart[] = [];
  for (let i = 0; i < n; i++) parts.push({ type: "image" });
  parts.push({ type: "text", text: rendered.user });
  const messages: ChatMessage[] = [];
  if (system !== undefined) messages.push({ role: "system", content: system });
  messages.push({ role: "user", content: parts });
  return messages;
}
