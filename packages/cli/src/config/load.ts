import { readFileSync } from "node:fs";
import path from "node:path";
import { closestName, editDistance, RarlError } from "@rarl/core";
import Ajv, { type ErrorObject } from "ajv";
import YAML from "yaml";

/** A config file is missing, unparsable, or does not match its JSON Schema. */
export class ConfigError extends RarlError {}

/** The closest candidate within a small edit distance, or undefined (@rarl/core's closestName). */
export const suggest = closestName;
export { editDistance };

/** Resolves the sub-schema at a JSON pointer-ish instance path (object properties only). */
function schemaAt(schema: any, instancePath: string): any {
  let s = schema;
  for (const part of instancePath.split("/").filter(Boolean)) {
    if (!s) return undefined;
    if (s.properties?.[part]) s = s.properties[part];
    else if (s.items) s = s.items;
    else if (s.additionalProperties && typeof s.additionalProperties === "object") s = s.additionalProperties;
    else return undefined;
  }
  return s;
}

/**
 * Where a value at a dotted path came from, for error messages: e.g. `--set beta=abc` for a field a command-line
 * override set. Return undefined to blame the config file.
 */
export type BlameFn = (dotted: string, kind: "value" | "unknown-field") => string | undefined;

/** Turns ajv errors into readable lines with a path and, for unknown keys, a suggestion. Each line starts with its source: `blame(path)` or the file. */
export function describeErrors(errors: ErrorObject[], schema: any, file: string, blame: BlameFn = () => undefined): string[] {
  const lines: string[] = [];
  const src = (dotted: string, kind: "value" | "unknown-field" = "value") => blame(dotted, kind) ?? file;
  for (const e of errors) {
    const at = e.instancePath ? e.instancePath.slice(1).replaceAll("/", ".") : "(root)";
    if (e.keyword === "additionalProperties") {
      const key = (e.params as any).additionalProperty as string;
      const known = Object.keys(schemaAt(schema, e.instancePath)?.properties ?? {});
      const s = suggest(key, known);
      const where = e.instancePath ? `${at}.${key}` : key;
      lines.push(`${src(where, "unknown-field")}: unknown field "${where}"${s ? ` (did you mean "${s}"?)` : ""}`);
    } else if (e.keyword === "false schema") {
      lines.push(`${src(at, "unknown-field")}: unknown field "${at}" here (it belongs to another trainer or model type)`);
    } else if (e.keyword === "if") {
      // the failing then/else branch is reported by its own errors
    } else if (e.keyword === "enum") {
      const allowed = (e.params as any).allowedValues as unknown[];
      const s = typeof e.data === "string" ? suggest(e.data, allowed.filter((v): v is string => typeof v === "string")) : undefined;
      lines.push(`${src(at)}: ${at} must be one of ${JSON.stringify(allowed)}${s ? ` (did you mean "${s}"?)` : ""}`);
    } else {
      // A range or type error: name the field's default as the fallback to write.
      const d = e.instancePath ? schemaAt(schema, e.instancePath) : undefined;
      const hint = d && "default" in d ? ` (default ${JSON.stringify(d.default)})` : "";
      lines.push(`${src(at)}: ${at} ${e.message}${hint}`);
    }
  }
  return [...new Set(lines)];
}

/** Parses JSON or YAML text (by extension; .yml/.yaml are YAML, everything else JSON). */
export function parseConfigText(text: string, file: string): unknown {
  const ext = path.extname(file).toLowerCase();
  try {
    return ext === ".yaml" || ext === ".yml" ? YAML.parse(text) : JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: cannot parse ${ext === ".yaml" || ext === ".yml" ? "YAML" : "JSON"}: ${(err as Error).message}`, {
      details: { file },
      cause: err,
    });
  }
}

/** Sets a dotted path ("grpo.beta") in a plain object, creating objects on the way. */
export function setPath(obj: Record<string, any>, dotted: string, value: unknown): void {
  const parts = dotted.split(".");
  let o = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof o[p] !== "object" || o[p] === null) o[p] = {};
    o = o[p];
  }
  o[parts[parts.length - 1]] = value;
}

/** Parses a "--set key=value" override; values are JSON when they parse, else strings. */
export function parseOverride(expr: string): [string, unknown] {
  const eq = expr.indexOf("=");
  if (eq <= 0) throw new ConfigError(`--set ${expr}: expected key=value (e.g. --set grpo.beta=0.04)`);
  const key = expr.slice(0, eq);
  const raw = expr.slice(eq + 1);
  try {
    return [key, JSON.parse(raw)];
  } catch {
    return [key, raw];
  }
}

export interface LoadConfigOptions {
  /** Dotted-path overrides applied after the file is read (CLI flags win over the file). */
  overrides?: Record<string, unknown>;
}

/**
 * Reads, overrides and validates a config file against a JSON Schema (defaults applied by ajv).
 * Relative paths stay as written; callers resolve them against `configDir`.
 */
export function loadConfig<T>(file: string, schema: object, opts: LoadConfigOptions = {}): { config: T; configDir: string } {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`, { details: { file }, cause: err });
  }
  const data = parseConfigText(text, file);
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigError(`${file}: the config must be an object at the top level`, { details: { file } });
  }
  for (const [k, v] of Object.entries(opts.overrides ?? {})) setPath(data as Record<string, any>, k, v);
  return { config: validateConfig<T>(data, schema, file), configDir: path.dirname(path.resolve(file)) };
}

const ajvCache = new WeakMap<object, ReturnType<Ajv["compile"]>>();

/** Validates (and fills defaults into) a config object; errors name the path, its source (`blame` or the file) and suggest fixes. */
export function validateConfig<T>(data: unknown, schema: object, file = "config", blame?: BlameFn): T {
  let validate = ajvCache.get(schema);
  if (!validate) {
    const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, verbose: true });
    validate = ajv.compile(schema);
    ajvCache.set(schema, validate);
  }
  if (!validate(data)) {
    const lines = describeErrors(validate.errors ?? [], schema, file, blame);
    throw new ConfigError(`invalid config:\n  ${lines.join("\n  ")}`, { details: { file, errors: lines } });
  }
  return data as T;
}
