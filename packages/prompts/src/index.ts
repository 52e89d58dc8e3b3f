export { SamplerError, TemplateError } from "./errors";
export { defineTemplate, placeholders, type RenderedTemplate, renderTemplate, type Template, validateTemplate } from "./template";
export {
  BUILTIN_TEMPLATES,
  EXPLANATION_REQUIRED,
  INFERENCE_TEMPLATES,
  NON_REASONING,
  NON_REASONING_SYSTEM_PROMPT,
  OPEN_ENDED,
  REASONING,
  REASONING_SYSTEM_PROMPT,
  SHORT_FORM,
  TRAINING_TEMPLATES,
} from "./builtins";
export { loadTemplates, templatesFromJson } from "./load";
export { TemplateSampler, type TemplateSamplerOptions, unitHash } from "./sampler";
export {
  type BuildPromptOptions,
  buildPrompt,
  type ChatMessage,
  type ContentPart,
  formatChoices,
  type PromptSample,
  sampleVariables,
} from "./messages";
