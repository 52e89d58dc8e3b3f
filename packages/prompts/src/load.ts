import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { TemplateError } from "./errors";
import { type Template, validateTemplate } from "./template";

const KEYS = new Set(["name", "description", "system", "user", "variables"]);

/**
 * Validates parsed JSON as a template list. Accepts one template object, an array of them, or `{ "templates": [...] }`.
 * Unknown keys, wrong types and placeholder/variable mismatches are TemplateErrors naming `source` and the entry.
 */
export function templatesFromJson(json: unknown, source = "<json>"): Template[] {
  let list: unknown[];
  if (Array.isArray(json)) list = json;
  else if (json && typeof json === "object" && Array.isArray((json as any).templates)) {
    const extra = Object.keys(json).filter((k) => k !== "templates");
    if (extra.length)
      throw new TemplateError(`${source}: unknown top-level key "${extra[0]}" (expected only "templates")`, {
        code: "TEMPLATE_INVALID",
        details: { file: source, field: extra[0] },
      });
    list = (json as any).templates;
  } else if (json && typeof json === "object") list = [json];
  else throw new TemplateError(`${source}: expected a template object, an array, or {"templates": [...]}`, { code: "TEMPLATE_INVALID", details: { file: source } });
  return list.map((entry, i) => {
    const where = `${source}: templates[${i}]`;
    if (!entry || typeof entry !== "object" || Array.isArray(entry))
      throw new TemplateError(`${where}: expected an object`, { code: "TEMPLATE_INVALID", details: { file: source, index: i } });
    for (const k of Object.keys(entry)) {
      if (!KEYS.has(k))
        throw new TemplateError(`${where}: unknown key "${k}" (allowed: ${[...KEYS].join(", ")})`, {
          code: "TEMPLATE_INVALID",
          details: { file: source, index: i, field: k },
        });
    }
    const e = entry as Record<string, unknown>;
    if (e.description !== undefined && typeof e.description !== "string")
      throw new TemplateError(`${where}: \`description\` must be a string`, { code: "TEMPLATE_INVALID", details: { file: source, index: i, field: "description" } });
    try {
      return validateTemplate({ ...(e as unknown as Template), variables: Array.isArray(e.variables) ? [...(e.variables as string[])] : (e.variables as any) });
    } catch (err) {
      if (err instanceof TemplateError)
        throw new TemplateError(`${where}: ${err.message}`, { code: err.code, details: { ...err.details, file: source, index: i }, cause: err });
      throw err;
    }
  });
}

/**
 * Loads user templates from a file: `.json` (validated by templatesFromJson) or a JS/TS module (`.js`, `.mjs`, `.ts`, ...)
 * whose default export (or `templates` export) is a Template or an array of them (a `.ts` file needs a TS-aware loader
 * such as tsx, which the `rarl` CLI runs under).
 */
export async function loadTemplates(file: string): Promise<Template[]> {
  const abs = path.resolve(file);
  if (abs.endsWith(".json")) {
    let text: string;
    try {
      text = fs.readFileSync(abs, "utf8");
    } catch (e) {
      throw new TemplateError(`${abs}: cannot read: ${(e as Error).message}`, { code: "TEMPLATE_IO", details: { file: abs }, cause: e });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new TemplateError(`${abs}: invalid JSON: ${(e as Error).message}`, { code: "TEMPLATE_INVALID", details: { file: abs }, cause: e });
    }
    return templatesFromJson(json, abs);
  }
  const mod = await import(pathToFileURL(abs).href);
  const value = mod.templates ?? mod.default;
  const list = Array.isArray(value) ? value : [value];
  return list.map((t: Template, i: number) => {
    try {
      return validateTemplate(t);
    } catch (err) {
      if (err instanceof TemplateError)
        throw new TemplateError(`${abs}: export [${i}]: ${err.message}`, { code: err.code, details: { ...err.details, file: abs, index: i }, cause: err });
      throw err;
    }
  });
}
