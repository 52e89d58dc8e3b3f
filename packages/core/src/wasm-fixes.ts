/**
 * Kernel fixes for @tensorflow/tfjs-backend-wasm 4.22 (measured in ../shared/NOTES.md):
 *  - BatchMatMul / _FusedMatMul with transposeA/transposeB run a slow generic loop (1-2 GFLOP/s vs 16+ without
 *    the flags). The wrappers transpose explicitly (wasm Transpose kernel) and call the fast non-transposed path.
 *  - UnsortedSegmentSum is missing, which breaks the gradient of `gather` w.r.t. its params. A JS kernel on the
 *    wasm heap fills the gap.
 *  - Identity copies the whole buffer, and the gradient tape clones (Identity) every input/output it saves for the
 *    backward pass, so each recorded op costs an extra copy of its saved tensors. tfjs tensors are immutable and no
 *    wasm kernel writes into an input buffer (every kernel, JS or C++, writes only to a fresh `makeOutput`), so the
 *    replacement shares the input's buffer and bumps the backend's refCount, exactly as the wasm Reshape kernel and
 *    tfjs-backend-cpu's Identity do; the buffer is freed when the last tensor on it is disposed.
 * Registered before the wasm backend is initialised (setup functions of the original kernels are kept).
 */
import * as tf from "@tensorflow/tfjs-core";

type TensorInfo = tf.TensorInfo;
interface WasmBackendLike {
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  disposeData(dataId: object): void;
  readSync(dataId: object): tf.backend_util.BackendValues;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}
type KernelArgs = { inputs: Record<string, TensorInfo>; backend: WasmBackendLike; attrs: Record<string, unknown> };
type KernelFn = (args: KernelArgs) => TensorInfo | TensorInfo[];

let applied = false;
let transposeFixOn = true;
let sharedIdentityOn = true;

/** Turns the transposed-matmul fix on or off at run time (for benchmarks and tests; default on). */
export function setWasmTransposeFix(on: boolean): void {
  transposeFixOn = on;
}

/**
 * Turns the buffer-sharing Identity on or off at run time (default on; off restores tfjs-backend-wasm's full copy,
 * for before/after measurements and tests).
 */
export function setWasmSharedIdentity(on: boolean): void {
  sharedIdentityOn = on;
}

function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return perm;
}

function wrapTransposedMatMul(kernelName: string): void {
  const orig = tf.getKernel(kernelName, "wasm");
  const transpose = tf.getKernel("Transpose", "wasm");
  if (!orig || !transpose) return;
  const origFn = orig.kernelFunc as unknown as KernelFn;
  const transposeFn = transpose.kernelFunc as unknown as KernelFn;
  const kernelFunc: KernelFn = (args) => {
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    if ((!transposeA && !transposeB) || !transposeFixOn) return origFn(args);
    const inputs = { ...args.inputs };
    const temps: TensorInfo[] = [];
    try {
      if (transposeA) {
        const a = inputs.a;
        inputs.a = transposeFn({ inputs: { x: a }, backend: args.backend, attrs: { perm: swapLastTwo(a.shape.length) } }) as TensorInfo;
        temps.push(inputs.a);
      }
      if (transposeB) {
        const b = inputs.b;
        inputs.b = transposeFn({ inputs: { x: b }, backend: args.backend, attrs: { perm: swapLastTwo(b.shape.length) } }) as TensorInfo;
        temps.push(inputs.b);
      }
      return origFn({ inputs, backend: args.backend, attrs: { ...args.attrs, transposeA: false, transposeB: false } });
    } finally {
      for (const t of temps) args.backend.disposeData(t.dataId);
    }
  };
  tf.unregisterKernel(kernelName, "wasm");
  tf.registerKernel({ ...orig, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

/**
 * UnsortedSegmentSum(x, segmentIds, numSegments): out[s, ...] = sum of x[i, ...] over i with segmentIds[i] == s.
 * segmentIds covers the leading dims of x; ids outside [0, numSegments) are dropped (TensorFlow semantics).
 */
const unsortedSegmentSum: KernelFn = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs;
  const numSegments = attrs.numSegments as number;
  const outer = segmentIds.shape.reduce((a, b) => a * b, 1);
  const inner = x.shape.slice(segmentIds.shape.length).reduce((a, b) => a * b, 1);
  const xv = backend.readSync(x.dataId) as Float32Array | Int32Array;
  const ids = backend.readSync(segmentIds.dataId) as Int32Array;
  const out = backend.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype);
  const ov = backend.typedArrayFromHeap(out);
  ov.fill(0);
  for (let i = 0; i < outer; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * inner;
    const dst = s * inner;
    for (let j = 0; j < inner; j++) ov[dst + j] += xv[src + j];
  }
  return out;
};

/**
 * Identity that shares x's buffer: one more reference on the backend's dataIdMap entry (disposeData frees the heap
 * block only when the refCount reaches 0). String tensors keep the original kernel.
 */
function wrapIdentity(): void {
  const orig = tf.getKernel("Identity", "wasm");
  if (!orig) return;
  const origFn = orig.kernelFunc as unknown as KernelFn;
  const kernelFunc: KernelFn = (args) => {
    const { x } = args.inputs;
    if (!sharedIdentityOn || x.dtype === "string") return origFn(args);
    args.backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
  tf.unregisterKernel("Identity", "wasm");
  tf.registerKernel({ ...orig, kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

/** Applies the wasm kernel fixes once. Safe to call before or after the wasm backend starts. */
export function applyWasmKernelFixes(opts: { transposedMatMul?: boolean; segmentSum?: boolean; sharedIdentity?: boolean } = {}): void {
  if (applied) return;
  applied = true;
  if (opts.transposedMatMul !== false) {
    wrapTransposedMatMul("BatchMatMul");
    wrapTransposedMatMul("_FusedMatMul");
  }
  if (opts.segmentSum !== false && !tf.getKernel("UnsortedSegmentSum", "wasm")) {
    tf.registerKernel({ kernelName: "UnsortedSegmentSum", backendName: "wasm", kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc });
  }
  if (opts.sharedIdentity !== false) wrapIdentity();
}
