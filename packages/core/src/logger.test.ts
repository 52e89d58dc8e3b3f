import { afterEach, describe, expect, it } from "vitest";
import { formatLogLine, getLogger, setLogSink } from "./logger";

const saved = { level: process.env.RARL_LOG_LEVEL, format: process.env.RARL_LOG_FORMAT };
afterEach(() => {
  if (saved.level === undefined) delete process.env.RARL_LOG_LEVEL;
  else process.env.RARL_LOG_LEVEL = saved.level;
  if (saved.format === undefined) delete process.env.RARL_LOG_FORMAT;
  else process.env.RARL_LOG_FORMAT = saved.format;
});

function capture(fn: () => void): string[] {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  try {
    fn();
  } finally {
    setLogSink(prev);
  }
  return lines;
}

describe("getLogger", () => {
  it("filters by RARL_LOG_LEVEL", () => {
    const log = getLogger("test:level");
    process.env.RARL_LOG_LEVEL = "warn";
    const lines = capture(() => {
      log.debug("d");
      log.info("i");
      log.warn("w");
      log.error("e");
    });
    expect(lines.map((l) => l.split(" ")[1])).toEqual(["WARN", "ERROR"]);
    process.env.RARL_LOG_LEVEL = "silent";
    expect(capture(() => log.error("x"))).toEqual([]);
    process.env.RARL_LOG_LEVEL = "debug";
    expect(capture(() => log.debug("x"))).toHaveLength(1);
    expect(log.enabled("debug")).toBe(true);
  });

  it("writes JSON lines when RARL_LOG_FORMAT=json, with fields, bigint, errors, and redacted secrets", () => {
    process.env.RARL_LOG_LEVEL = "info";
    process.env.RARL_LOG_FORMAT = "json";
    const [line] = capture(() =>
      getLogger("core:backend").info("chose backend", { backend: "wasm", n: 3n, err: new RangeError("bad"), apiKey: "sk-123", nested: { OPENAI_API_KEY: "x" } }),
    );
    const rec = JSON.parse(line);
    expect(rec).toMatchObject({ level: "info", logger: "core:backend", msg: "chose backend", backend: "wasm", n: "3", err: { name: "RangeError", message: "bad" } });
    expect(line).not.toContain("sk-123");
    expect(rec.apiKey).toBe("[redacted]");
    expect(rec.nested.OPENAI_API_KEY).toBe("[redacted]");
    expect(Number.isNaN(Date.parse(rec.time))).toBe(false);
  });

  it("writes human lines otherwise; child loggers extend the name", () => {
    const line = formatLogLine("human", new Date(0), "warn", "a:b", "slow step", { ms: 12.5, note: "two words" });
    expect(line).toBe('1970-01-01T00:00:00.000Z WARN  [a:b] slow step ms=12.5 note="two words"');
    expect(getLogger("a").child("b").name).toBe("a:b");
    const circ: Record<string, unknown> = {};
    circ.self = circ;
    expect(formatLogLine("json", new Date(0), "info", "x", "m", { circ })).toContain("[circular]");
    expect(JSON.parse(formatLogLine("json", new Date(0), "info", "x", "m", { level: "error", msg: "forged" }))).toMatchObject({ level: "info", msg: "m" });
  });
});
