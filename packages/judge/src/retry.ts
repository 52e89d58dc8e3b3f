/** Retry policy of a sample: transient errors (429, 5xx, timeouts, connection errors) and unusable replies. */
export interface RetryOptions {
  /** Total requests per sample, the first and any repair request included. Default 6. */
  maxAttempts?: number;
  /** Base delay in ms of the exponential backoff (delay before retry k is up to base * 2^k). Default 1000. */
  baseDelayMs?: number;
  /** Cap on one backoff delay in ms. Default 60000. */
  maxDelayMs?: number;
  /** Cap on a server-requested Retry-After delay in ms. Default 120000. */
  maxRetryAfterMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { maxAttempts: 6, baseDelayMs: 1000, maxDelayMs: 60_000, maxRetryAfterMs: 120_000 };

/**
 * Backoff delay before retry number `retry` (0-based): "equal jitter", i.e. half the exponential
 * step plus a uniform random half, so delays grow and never collapse to 0. If the server sent
 * Retry-After, the delay is at least that (capped by maxRetryAfterMs). Pure given `random`.
 */
export function backoffDelay(retry: number, opts: Required<RetryOptions>, retryAfterMs: number | undefined, random: () => number = Math.random): number {
  const exp = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** retry);
  const jittered = exp / 2 + random() * (exp / 2);
  if (retryAfterMs !== undefined && Number.isFinite(retryAfterMs) && retryAfterMs >= 0) {
    return Math.max(jittered, Math.min(retryAfterMs, opts.maxRetryAfterMs));
  }
  return jittered;
}

/**
 * Parses Retry-After (delta-seconds, fractional accepted, or an HTTP date) and the non-standard
 * retry-after-ms header into milliseconds. Returns undefined when absent or unparsable. Pure given `now`.
 */
export function parseRetryAfter(get: (name: string) => string | null | undefined, now: number = Date.now()): number | undefined {
  const ms = get("retry-after-ms");
  if (ms != null && ms.trim() !== "" && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const ra = get("retry-after");
  if (ra == null || ra.trim() === "") return undefined;
  const secs = Number(ra);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const date = Date.parse(ra);
  if (Number.isFinite(date)) return Math.max(0, date - now);
  return undefined;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
