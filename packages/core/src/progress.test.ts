import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createProgress } from "./progress";

function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  const s = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  }) as Writable & { isTTY?: boolean; columns?: number };
  s.isTTY = isTTY;
  s.columns = 120;
  return { s, text: () => chunks.join("") };
}

describe("createProgress", () => {
  it("falls back to plain lines (no ANSI escapes) when the stream is not a TTY", async () => {
    const { s, text } = fakeStream(false);
    const p = createProgress({ total: 4, label: "train", stream: s, plainLineIntervalMs: 20 });
    p.update(1, { loss: 0.123456 });
    await new Promise((r) => setTimeout(r, 60));
    p.increment();
    p.increment(2, { loss: 0.1 });
    p.stop();
    p.stop(); // idempotent
    const out = text();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: checking for ANSI escapes
    expect(out).not.toMatch(/\x1b/);
    const lines = out.split("\n").filter(Boolean);
    expect(lines.length).toBeGreaterThanOrEqual(3); // start, at least one timed line, final
    expect(lines.some((l) => l.includes("train 1/4 25%") && l.includes("loss=0.1235"))).toBe(true);
    expect(lines.at(-1)).toContain("train 4/4 100%");
  });

  it("draws a bar in place on a TTY", () => {
    const { s, text } = fakeStream(true);
    const p = createProgress({ total: 2, label: "eval", stream: s });
    p.update(2);
    p.stop();
    expect(text()).toContain("█");
    expect(text()).toContain("eval");
  });

  it("prints nothing when disabled", () => {
    const { s, text } = fakeStream(false);
    const p = createProgress({ total: 2, stream: s, enabled: false });
    p.increment();
    p.stop();
    expect(text()).toBe("");
  });
});
