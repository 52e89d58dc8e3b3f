import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_RETRY, parseRetryAfter } from "./retry";

const opts = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };

describe("backoffDelay", () => {
  it("grows exponentially with jitter between half and the full step, capped", () => {
    expect(backoffDelay(0, opts, undefined, () => 0)).toBe(50);
    expect(backoffDelay(0, opts, undefined, () => 1)).toBe(100);
    expect(backoffDelay(3, opts, undefined, () => 0.5)).toBe(600);
    expect(backoffDelay(10, opts, undefined, () => 1)).toBe(1000);
  });
  it("waits at least Retry-After, capped by maxRetryAfterMs", () => {
    expect(backoffDelay(0, opts, 700, () => 0)).toBe(700);
    expect(backoffDelay(0, { ...opts, maxRetryAfterMs: 300 }, 5000, () => 0)).toBe(300);
  });
});

describe("parseRetryAfter", () => {
  const h = (m: Record<string, string>) => (n: string) => m[n];
  it("reads seconds, fractional seconds, HTTP dates and retry-after-ms", () => {
    expect(parseRetryAfter(h({ "retry-after": "2" }))).toBe(2000);
    expect(parseRetryAfter(h({ "retry-after": "0.25" }))).toBe(250);
    expect(parseRetryAfter(h({ "retry-after": new Date(10_000).toUTCString() }), 7_000)).toBe(3000);
    expect(parseRetryAfter(h({ "retry-after-ms": "40", "retry-after": "9" }))).toBe(40);
    expect(parseRetryAfter(h({}))).toBeUndefined();
    expect(parseRetryAfter(h({ "retry-after": "soon" }))).toBeUndefined();
  });
});
