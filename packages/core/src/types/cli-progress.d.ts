// Minimal typings for the parts of cli-progress 3.12 that @rarl/core uses (no @types package is installed).
declare module "cli-progress" {
  export interface Params {
    progress: number;
    eta: number;
    startTime: number;
    stopTime: number | null;
    total: number;
    value: number;
    maxWidth: number;
  }
  export interface Options {
    format?: string | ((options: Options, params: Params, payload: Record<string, unknown>) => string);
    stream?: NodeJS.WritableStream;
    noTTYOutput?: boolean;
    notTTYSchedule?: number;
    throttleTime?: number;
    fps?: number;
    hideCursor?: boolean | null;
    clearOnComplete?: boolean;
    stopOnComplete?: boolean;
    etaBuffer?: number;
    barsize?: number;
    barCompleteChar?: string;
    barIncompleteChar?: string;
    gracefulExit?: boolean;
  }
  export class SingleBar {
    constructor(options: Options, preset?: unknown);
    start(total: number, startValue: number, payload?: Record<string, unknown>): void;
    update(current: number, payload?: Record<string, unknown>): void;
    increment(delta?: number, payload?: Record<string, unknown>): void;
    setTotal(total: number): void;
    stop(): void;
    getTotal(): number;
  }
  export const Presets: Record<string, unknown>;
  const _default: { SingleBar: typeof SingleBar; Presets: typeof Presets };
  export default _default;
}
