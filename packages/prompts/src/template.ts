import { TemplateError } from "./errors";

/**
 * A prompt template. Text fields may contain placeholders `{name}` (name: `[A-Za-z_][A-Za-z0-9_]*`);
 * `{{` and `}}` stand for literal braces; any other brace is literal text.
 */
export interface Template {
  /** Unique name, used by configs and the sampler (e.g. "explanation-required"). */
  name: string;
  /** Human-readable description. Optional. */
  description?: string;
  /** System message text. When absent, no system message is emitted (unless buildPrompt's `system` option gives one). */
  system?: string;
  /** User message text (it follows the image slot(s) in the user turn). */
  user: string;
  /**
   * Declared variables. Every placeholder in `system`/`user` must be declared and every declared variable must appear
   * in the text; rendering needs a value for each of them and rejects values for undeclared names.
   */
  variables: string[];
}

const PLACEHOLDER = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/** The placeholder names used in a text, in order of first appearance. */
export function placeholders(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(PLACEHOLDER)) {
    if (m[1] !== undefined && !out.includes(m[1])) out.push(m[1]);
  }
  return out;
}

/**
 * Checks a template's structure: a non-empty name, string texts, declared variables matching the placeholders.
 * Throws TemplateError naming the template (and the variable) otherwise. Returns the template.
 */
export function validateTemplate(t: Template): Template {
  const name = typeof t?.name === "string" && t.name.length > 0 ? t.name : undefined;
  if (!name) throw new TemplateError("template: `name` must be a non-empty string", { code: "TEMPLATE_INVALID", details: { template: t?.name } });
  if (typeof t.user !== "string")
    throw new TemplateError(`template "${name}": \`user\` must be a string`, { code: "TEMPLATE_INVALID", details: { template: name, field: "user" } });
  if (t.system !== undefined && typeof t.system !== "string")
    throw new TemplateError(`template "${name}": \`system\` must be a string when given`, {
      code: "TEMPLATE_INVALID",
      details: { template: name, field: "system" },
    });
  if (!Array.isArray(t.variables) || t.variables.some((v) => typeof v !== "string"))
    throw new TemplateError(`template "${name}": \`variables\` must be an array of strings`, {
      code: "TEMPLATE_INVALID",
      details: { template: name, field: "variables" },
    });
  const used = [...placeholders(t.system ?? ""), ...placeholders(t.user)];
  for (const v of used) {
    if (!t.variables.includes(v))
      throw new TemplateError(`template "${name}": placeholder {${v}} is not a declared variable (declared: ${t.variables.join(", ") || "none"})`, {
        code: "TEMPLATE_UNKNOWN_VARIABLE",
        details: { template: name, variable: v },
      });
  }
  for (const v of t.variables) {
    if (!used.includes(v))
      throw new TemplateError(`template "${name}": declared variable "${v}" does not appear in the text`, {
        code: "TEMPLATE_UNUSED_VARIABLE",
        details: { template: name, variable: v },
      });
  }
  return t;
}

/** Creates (and validates) a template. */
export function defineTemplate(t: Template): Template {
  return validateTemplate({ ...t, variables: [...t.variables] });
}

function substitute(template: string, text: string, vars: Record<string, string>): string {
  return text.replace(PLACEHOLDER, (m, name: string | undefined) => {
    if (m === "{{") return "{";
    if (m === "}}") return "}";
    const v = vars[name as string];
    if (v === undefined)
      throw new TemplateError(`template "${template}": missing value for variable "${name}"`, {
        code: "TEMPLATE_MISSING_VARIABLE",
        details: { template, variable: name },
      });
    return v;
  });
}

/** The rendered texts of a template. `system` is undefined when the template has none. */
export interface RenderedTemplate {
  system?: string;
  user: string;
}

/**
 * Fills a template's placeholders. Every declared variable needs a string value (else TemplateError
 * TEMPLATE_MISSING_VARIABLE); a value for an undeclared name is TEMPLATE_UNKNOWN_VARIABLE.
 */
export function renderTemplate(t: Template, vars: Record<string, string>): RenderedTemplate {
  for (const k of Object.keys(vars)) {
    if (!t.variables.includes(k))
      throw new TemplateError(`template "${t.name}": unknown variable "${k}" (declared: ${t.variables.join(", ") || "none"})`, {
        code: "TEMPLATE_UNKNOWN_VARIABLE",
        details: { template: t.name, variable: k },
      });
  }
  for (const v of t.variables) {
    if (typeof vars[v] !== "string")
      throw new TemplateError(`template "${t.name}": missing value for variable "${v}"`, {
        code: "TEMPLATE_MISSING_VARIABLE",
        details: { template: t.name, variable: v },
      });
  }
  const out: RenderedTemplate = { user: substitute(t.name, t.user, vars) };
  if (t.system !== undefined) out.system = substitute(t.name, t.system, vars);
  return out;
}
