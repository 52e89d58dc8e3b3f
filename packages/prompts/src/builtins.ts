import { defineTemplate, type Template } from "./template";

// Text copied verbatim from the RARL paper (docs/reference/rarl-paper.md): Appendix A "Prompts for Training VLMs"
// (the f-strings' `question` is the {question} placeholder; line wraps of the PDF joined with single spaces; the paper's
// spelling, e.g. "askes", kept as printed) and §3.3 "Thinking Initialization and Prompting Diversity" (inference prompts).

/** Appendix A, "Explanation-Required Answer Prompt". */
export const EXPLANATION_REQUIRED: Template = defineTemplate({
  name: "explanation-required",
  description: "RARL Appendix A: thorough clinical reasoning with justification before the answer.",
  user:
    "You are a Medical Assistant. Carefully analyze the medical image and the User's question. Think through the problem step by step using clinical reasoning and relevant visual cues. Present your thinking process clearly within <think> </think> tags, and then provide a well-justified answer within <answer> </answer> tags. User: {question} Assistant: Let me solve this step by step.",
  variables: ["question"],
});

/** Appendix A, "Short-Form Answer Prompt". */
export const SHORT_FORM: Template = defineTemplate({
  name: "short-form",
  description: "RARL Appendix A: concise factual or yes/no answer with minimal justification.",
  user:
    "You are a Medical Assistant. Read the User's question and the associated medical image. Provide your thinking within <think> </think> tags and a concise factual answer within <answer> </answer> tags. User: {question} Assistant:",
  variables: ["question"],
});

/** Appendix A, "Open-Ended Answer Prompt". */
export const OPEN_ENDED: Template = defineTemplate({
  name: "open-ended",
  description: "RARL Appendix A: free-form reasoning for unstructured or ambiguous scenarios.",
  user:
    "You are a Medical Assistant. The User askes a question based on the provided medical image. Consider all visual and contextual details. Share your reasoning freely within <think> </think> tags, and conclude with your best judgment within <answer> </answer> tags. User: {question} Assistant:",
  variables: ["question"],
});

/** §3.3 reasoning prompting (inference system prompt). */
export const REASONING_SYSTEM_PROMPT =
  "A conversation between a User and a Medical Assistant. The User asks a question about the image, and the Assistant solves it. The Assistant first thinks through the reasoning process step-by-step, then provides the answer to the User.";

/** §3.3 non-reasoning prompting (inference system prompt). */
export const NON_REASONING_SYSTEM_PROMPT = "A conversation between a User and a Medical Assistant. The Assistant provides the answer to the User.";

/** §3.3 reasoning prompting as a template: the system prompt plus the question as the user text. */
export const REASONING: Template = defineTemplate({
  name: "reasoning",
  description: "RARL §3.3 reasoning prompting (inference).",
  system: REASONING_SYSTEM_PROMPT,
  user: "{question}",
  variables: ["question"],
});

/** §3.3 non-reasoning prompting as a template. */
export const NON_REASONING: Template = defineTemplate({
  name: "non-reasoning",
  description: "RARL §3.3 non-reasoning prompting (inference).",
  system: NON_REASONING_SYSTEM_PROMPT,
  user: "{question}",
  variables: ["question"],
});

/** The three training (prompting-diversity) templates of Appendix A, in the paper's order. */
export const TRAINING_TEMPLATES: readonly Template[] = [EXPLANATION_REQUIRED, SHORT_FORM, OPEN_ENDED];

/** The two inference templates of §3.3. */
export const INFERENCE_TEMPLATES: readonly Template[] = [REASONING, NON_REASONING];

/** Every built-in template by name. */
export const BUILTIN_TEMPLATES: Readonly<Record<string, Template>> = Object.fromEntries(
  [...TRAINING_TEMPLATES, ...INFERENCE_TEMPLATES].map((t) => [t.name, t]),
);
