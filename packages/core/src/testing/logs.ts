import { setLogSink } from "../logger";

/** Test helper: runs `fn` with @rarl/core's log lines captured (not printed); the previous sink is restored after. */
export function captureLogs<T>(fn: () => T): { value: T; lines: string[] } {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  try {
    return { value: fn(), lines };
  } finally {
    setLogSink(prev);
  }
}

/** {@link captureLogs} for an async `fn`: the sink stays swapped until its promise settles. */
export async function captureLogsAsync<T>(fn: () => Promise<T>): Promise<{ value: T; lines: string[] }> {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  try {
    return { value: await fn(), lines };
  } finally {
    setLogSink(prev);
  }
}
