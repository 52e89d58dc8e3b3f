import cliProgress from "cli-progress";

/** Options of {@link createProgress}. */
export interface ProgressOptions {
  /** Number of steps. Required. */
  total: number;
  /** Text before the bar. Default "progress". */
  label?: string;
  /** Output stream. Default process.stderr. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** When the stream is not a TTY, print one plain line every this many ms (and a final one at stop). Default 2000. */
  plainLineIntervalMs?: number;
  /** Set false to print nothing at all. Default true unless RARL_PROGRESS=0. */
  enabled?: boolean;
}

export interface Progress {
  /** Sets the current value; `payload` fields are shown after the bar as key=value. */
  update(value: number, payload?: Record<string, unknown>): void;
  increment(delta?: number, payload?: Record<string, unknown>): void;
  /** Renders the final state and stops the bar's timer. Must be called (the timer keeps the process alive). */
  stop(): void;
}

function fmtPayload(p: Record<string, unknown>): string {
  const parts = Object.entries(p)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : String(v)}`);
  return parts.length ? ` | ${parts.join(" ")}` : "";
}

/**
 * A progress bar (cli-progress SingleBar). On a TTY it redraws in place; otherwise it falls back to
 * plain lines (`noTTYOutput`), one every `plainLineIntervalMs` plus a final line at `stop()`.
 */
export function createProgress(opts: ProgressOptions): Progress {
  const label = opts.label ?? "progress";
  const enabled = opts.enabled ?? process.env.RARL_PROGRESS !== "0";
  if (!enabled) return { update() {}, increment() {}, stop() {} };
  const stream = opts.stream ?? process.stderr;
  const bar = new cliProgress.SingleBar({
    stream,
    noTTYOutput: true,
    notTTYSchedule: opts.plainLineIntervalMs ?? 2000,
    hideCursor: stream.isTTY ? true : null,
    gracefulExit: false,
    format: (options, params, payload) => {
      const size = options.barsize ?? 30;
      const done = Math.round(params.progress * size);
      const pct = Math.floor(params.progress * 100);
      const eta = Number.isFinite(params.eta) && params.value > 0 ? ` eta ${params.eta}s` : "";
      const bar = stream.isTTY ? ` [${"█".repeat(done)}${"░".repeat(size - done)}]` : "";
      return `${label}${bar} ${params.value}/${params.total} ${pct}%${eta}${fmtPayload(payload)}`;
    },
  });
  bar.start(opts.total, 0, {});
  let stopped = false;
  return {
    update: (v, p) => bar.update(v, p),
    increment: (d = 1, p) => bar.increment(d, p),
    stop: () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
