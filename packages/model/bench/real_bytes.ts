/**
 * Real buffer bytes on the wasm backend, for the memory benches (memory_probe.ts, packages/grpo/bench/run.ts).
 *
 * tf.memory().numBytes and tf.profile count tensors, and on wasm several tensors can share one heap buffer (Reshape,
 * and @rarl/core's Identity, which the gradient tape uses to save tensors). This tracker instead wraps the wasm
 * backend's `move` (called once per new heap buffer: every kernel output and uploaded tensor) and `disposeData`
 * (which returns true only when a buffer's last reference goes and its heap block is freed), and keeps the live sum
 * of buffer sizes (elements x 4 bytes; bool buffers are 1 byte per element but counted as 4) and its high-water mark.
 */
import * as tf from "@tensorflow/tfjs-core";

export interface RealBytes {
  /** Bytes of the live heap buffers. */
  live: number;
  /** High-water mark of `live` since the last {@link RealBytes.resetPeak}. */
  peak: number;
  /** Sets peak = live. */
  resetPeak(): void;
}

let tracker: RealBytes | null = null;

/** Starts tracking (once per process; later calls return the same tracker). Null when the backend is not wasm. */
export function trackRealBytes(): RealBytes | null {
  if (tracker) return tracker;
  if (tf.getBackend() !== "wasm") return null;
  const t: RealBytes = {
    live: 0,
    peak: 0,
    resetPeak() {
      t.peak = t.live;
    },
  };
  type Be = {
    move: (...a: unknown[]) => void;
    disposeData: (id: unknown, force?: boolean) => boolean;
    dataIdMap: { get(id: unknown): { shape: number[]; dtype: string } | undefined };
  };
  const be = tf.backend() as unknown as Be;
  const move = be.move.bind(be);
  const disposeData = be.disposeData.bind(be);
  be.move = (...a: unknown[]) => {
    move(...a);
    if (a[3] !== "string") t.live += (a[2] as number[]).reduce((x, y) => x * y, 1) * 4;
    t.peak = Math.max(t.peak, t.live);
  };
  be.disposeData = (id: unknown, force?: boolean) => {
    const d = be.dataIdMap.get(id);
    const freed = disposeData(id, force);
    if (freed && d && d.dtype !== "string") t.live -= d.shape.reduce((x, y) => x * y, 1) * 4;
    return freed;
  };
  // Buffers that existed before tracking started are counted from the engine's own total (no sharing yet at start).
  t.live = tf.memory().numBytes;
  t.peak = t.live;
  tracker = t;
  return t;
}
