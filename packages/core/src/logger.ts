/**
 * Structured logger. Level from RARL_LOG_LEVEL (debug | info | warn | error | silent; default info),
 * format from RARL_LOG_FORMAT (`json` -> one JSON object per line; anything else -> human-readable lines).
 * Output goes to stderr (stdout stays free for command output). Both variables are read at each call,
 * so they can be changed at run time. Field names that look like credentials are redacted.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Record<string, unknown>;

export interface Logger {
  readonly name: string;
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** True when a message at this level would be written. */
  enabled(level: LogLevel): boolean;
  /** A logger named `<name>:<sub>`. */
  child(sub: string): Logger;
}

const RANK: Record<LogLevel | "silent", number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
const SECRET = /(api[_-]?key|secret|password|passwd|authorization|bearer|access[_-]?token)/i;

let sink: (line: string) => void = (line) => {
  process.stderr.write(`${line}\n`);
};

/** Replaces where log lines go (default: stderr); returns the previous sink. For tests and embedding. */
export function setLogSink(fn: (line: string) => void): (line: string) => void {
  const prev = sink;
  sink = fn;
  return prev;
}

function currentLevel(): number {
  const v = (process.env.RARL_LOG_LEVEL ?? "info").toLowerCase();
  return v in RANK ? RANK[v as LogLevel] : RANK.info;
}

function clean(v: unknown, key: string, depth: number, seen: WeakSet<object>): unknown {
  if (SECRET.test(key)) return "[redacted]";
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Error) {
    const out: Record<string, unknown> = { name: v.name, message: v.message };
    if ("code" in v) out.code = (v as { code: unknown }).code;
    return out;
  }
  if (typeof v === "object" && v !== null) {
    if (seen.has(v)) return "[circular]";
    if (depth > 4) return "[deep]";
    seen.add(v);
    if (ArrayBuffer.isView(v)) return `[${v.constructor.name} ${(v as unknown as { length?: number }).length ?? v.byteLength}]`;
    if (Array.isArray(v)) return v.slice(0, 50).map((x) => clean(x, "", depth + 1, seen));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = clean(x, k, depth + 1, seen);
    return out;
  }
  return v;
}

function human(v: unknown): string {
  if (typeof v === "string") return /[\s="]/.test(v) || v === "" ? JSON.stringify(v) : v;
  if (typeof v === "object" && v !== null) return JSON.stringify(v);
  return String(v);
}

/** Formats one record (exported for tests). */
export function formatLogLine(format: "json" | "human", time: Date, level: LogLevel, name: string, msg: string, fields?: LogFields): string {
  const f = fields ? (clean(fields, "", 0, new WeakSet()) as Record<string, unknown>) : {};
  // the record's own keys come last so that a field cannot overwrite them
  if (format === "json") return JSON.stringify({ ...f, time: time.toISOString(), level, logger: name, msg });
  const kv = Object.entries(f)
    .map(([k, v]) => `${k}=${human(v)}`)
    .join(" ");
  return `${time.toISOString()} ${level.toUpperCase().padEnd(5)} [${name}] ${msg}${kv ? ` ${kv}` : ""}`;
}

const loggers = new Map<string, Logger>();

/** The logger for a component (e.g. "core:backend", "grpo:trainer"); cached per name. */
export function getLogger(name: string): Logger {
  let lg = loggers.get(name);
  if (lg) return lg;
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (RANK[level] < currentLevel()) return;
    const format = process.env.RARL_LOG_FORMAT === "json" ? "json" : "human";
    sink(formatLogLine(format, new Date(), level, name, msg, fields));
  };
  lg = {
    name,
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    enabled: (level) => RANK[level] >= currentLevel(),
    child: (sub) => getLogger(`${name}:${sub}`),
  };
  loggers.set(name, lg);
  return lg;
}
