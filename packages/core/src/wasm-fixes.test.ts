import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { registerWasmBackend } from "./backend";
import { Rng } from "./rng";
import { setWasmSharedIdentity, setWasmTransposeFix } from "./wasm-fixes";

/** Runs `fn` on the given backend and returns plain arrays (no tensors escape). */
async function on<T>(backend: "cpu" | "wasm", fn: () => T): Promise<T> {
  await tf.setBackend(backend);
  return fn();
}

function randn(shape: number[], seed: number): tf.Tensor {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng.normal()), shape);
}

function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-4): void {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
  expect(worst).toBeLessThan(tol);
}

// `grad: false` where tfjs-core's MatMul gradient itself does not support broadcast batch dims (on any backend).
const CASES: { a: number[]; b: number[]; tA: boolean; tB: boolean; grad?: false }[] = [
  { a: [5, 4], b: [4, 6], tA: false, tB: false },
  { a: [4, 5], b: [4, 6], tA: true, tB: false },
  { a: [5, 4], b: [6, 4], tA: false, tB: true },
  { a: [4, 5], b: [6, 4], tA: true, tB: true },
  { a: [2, 3, 7, 5], b: [2, 3, 6, 7], tA: true, tB: true },
  { a: [2, 1, 5, 7], b: [3, 6, 7], tA: false, tB: true, grad: false }, // broadcast batch
  { a: [3, 7, 5], b: [7, 6], tA: true, tB: false, grad: false }, // 3-D x 2-D is a broadcast too
];

/** matMul value and gradients of sum(matMul(a,b)^2) w.r.t. a and b. */
function matmulAndGrads(c: (typeof CASES)[number], seed: number): number[][] {
  return tf.tidy(() => {
    const a = randn(c.a, seed);
    const b = randn(c.b, seed + 1);
    const y = tf.matMul(a, b, c.tA, c.tB);
    if (c.grad === false) return [Array.from(y.dataSync()), [], []];
    const g = tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, w, c.tA, c.tB))));
    const [ga, gb] = g([a, b]);
    return [Array.from(y.dataSync()), Array.from(ga.dataSync()), Array.from(gb.dataSync())];
  });
}

beforeAll(async () => {
  await registerWasmBackend();
});

describe("wasm BatchMatMul with transposeA/transposeB (explicit transpose, then the fast path)", () => {
  it("gives the cpu backend's values and gradients for every flag combination and broadcast batches", async () => {
    for (const [i, c] of CASES.entries()) {
      const ref = await on("cpu", () => matmulAndGrads(c, 10 * i));
      const got = await on("wasm", () => matmulAndGrads(c, 10 * i));
      setWasmTransposeFix(false);
      const slow = await on("wasm", () => matmulAndGrads(c, 10 * i));
      setWasmTransposeFix(true);
      for (let k = 0; k < 3; k++) {
        expectClose(got[k], ref[k]);
        expectClose(slow[k], ref[k]);
      }
    }
  });

  it("fused matMul (bias + relu) with transposes matches cpu", async () => {
    const run = () =>
      tf.tidy(() => {
        const a = randn([6, 4], 1);
        const b = randn([5, 6], 2);
        const bias = randn([5], 3);
        return Array.from(tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias, activation: "relu" }).dataSync());
      });
    expectClose(await on("wasm", run), await on("cpu", run));
  });

  it("leaks no tensors and no wasm buffers across repeated transposed matmuls", async () => {
    await tf.setBackend("wasm");
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const a = randn([8, 16], 1);
    const b = randn([8, 16], 2);
    tf.matMul(a, b, true, false).dispose();
    const n0 = tf.memory().numTensors;
    const d0 = backend.numDataIds();
    for (let i = 0; i < 5; i++) {
      tf.tidy(() => {
        tf.grads((x: tf.Tensor) => tf.sum(tf.matMul(x, b, true, false)))([a]);
      });
    }
    for (let i = 0; i < 5; i++) tf.matMul(a, b, false, true).dispose();
    expect(tf.memory().numTensors).toBe(n0);
    expect(backend.numDataIds()).toBe(d0);
    tf.dispose([a, b]);
  });
});

describe("wasm UnsortedSegmentSum (missing in tfjs-backend-wasm 4.22)", () => {
  it("matches cpu, dropping out-of-range segment ids, for float32 and int32", async () => {
    const run = () =>
      tf.tidy(() => {
        const x = randn([6, 3, 2], 4);
        const ids = tf.tensor1d([0, 2, 2, -1, 4, 1], "int32");
        const xi = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], "int32");
        return [
          Array.from(tf.unsortedSegmentSum(x, ids, 4).dataSync()),
          Array.from(tf.unsortedSegmentSum(xi, tf.tensor1d([1, 1, 0], "int32"), 2).dataSync()),
        ];
      });
    const ref = await on("cpu", run);
    const got = await on("wasm", run);
    expectClose(got[0], ref[0], 1e-6);
    expect(got[1]).toEqual(ref[1]);
    expect(got[1]).toEqual([5, 6, 4, 6]);
  });

  it("makes the gradient of gather w.r.t. its params work and match cpu (axis 0 and 1, repeated indices)", async () => {
    const run = () =>
      tf.tidy(() => {
        const p = randn([7, 5], 5);
        const idx = tf.tensor1d([3, 0, 3, 6, 3], "int32");
        const w = randn([5, 5], 6);
        const g0 = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.gather(x, idx, 0), w)))(p);
        const g1 = tf.grad((x: tf.Tensor) => tf.sum(tf.square(tf.gather(x, tf.tensor1d([4, 4, 1], "int32"), 1))))(p);
        return [Array.from(g0.dataSync()), Array.from(g1.dataSync())];
      });
    const ref = await on("cpu", run);
    const got = await on("wasm", run);
    expectClose(got[0], ref[0], 1e-6);
    expectClose(got[1], ref[1], 1e-6);
    // row 3 was gathered three times: its gradient is the sum of three rows of w
    expect(ref[0].slice(15, 20).some((v) => v !== 0)).toBe(true);
  });
});

interface WasmBackendInternals {
  numDataIds(): number;
  refCount(dataId: object): number;
  move(dataId: object, values: unknown, shape: number[], dtype: tf.DataType, refCount: number): void;
}

/** Heap bytes the wasm backend allocates (every buffer goes through `move`) while `fn` runs. */
function wasmBytesAllocated(fn: () => void): number {
  const be = tf.backend() as unknown as WasmBackendInternals;
  const move = be.move;
  let bytes = 0;
  be.move = function (this: WasmBackendInternals, ...a) {
    if (a[3] !== "string") bytes += a[2].reduce((x, y) => x * y, 1) * 4;
    return move.apply(this, a);
  };
  try {
    fn();
  } finally {
    be.move = move;
  }
  return bytes;
}

describe("wasm Identity shares the input buffer (the tape's saved-tensor clones cost no copy)", () => {
  it("clone has the same values without a new heap buffer; either tensor outlives the other's disposal; no leak", async () => {
    await tf.setBackend("wasm");
    const be = tf.backend() as unknown as WasmBackendInternals;
    const n0 = tf.memory().numTensors;
    const b0 = tf.memory().numBytes;
    const d0 = be.numDataIds();
    for (const disposeSourceFirst of [true, false]) {
      const x = randn([3, 5], 11);
      const want = Array.from(x.dataSync());
      let c: tf.Tensor = x;
      expect(wasmBytesAllocated(() => (c = tf.clone(x)))).toBe(0);
      expect(be.numDataIds()).toBe(d0 + 1);
      expect(be.refCount(x.dataId)).toBe(2);
      const [first, second] = disposeSourceFirst ? [x, c] : [c, x];
      first.dispose();
      expect(first.isDisposed).toBe(true);
      expect(be.numDataIds()).toBe(d0 + 1); // buffer still alive for the other tensor
      expect(Array.from(second.dataSync())).toEqual(want);
      expect(tf.tidy(() => Array.from(tf.add(second, 1).dataSync()))).toEqual(want.map((v) => Math.fround(v + 1)));
      second.dispose();
      expect(be.numDataIds()).toBe(d0);
      expect(be.refCount(x.dataId)).toBe(0);
    }
    // int32 and bool clones share too
    const i = tf.tensor1d([1, -2, 3], "int32");
    const bl = tf.tensor1d([1, 0, 1], "bool");
    const [ci, cb] = [tf.clone(i), tf.clone(bl)];
    tf.dispose([i, bl]);
    expect(Array.from(ci.dataSync())).toEqual([1, -2, 3]);
    expect(Array.from(cb.dataSync())).toEqual([1, 0, 1]);
    expect(cb.dtype).toBe("bool");
    tf.dispose([ci, cb]);
    expect(tf.memory().numTensors).toBe(n0);
    expect(tf.memory().numBytes).toBe(b0);
    expect(be.numDataIds()).toBe(d0);
  });

  it("gradients through matMul + relu + gather match cpu, with no copy per saved tensor and no leak", async () => {
    const run = () =>
      tf.tidy(() => {
        const p = randn([6, 4], 21);
        const w = randn([4, 5], 22);
        const idx = tf.tensor1d([2, 0, 2, 5], "int32");
        const f = (pp: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.square(tf.relu(tf.matMul(tf.gather(pp, idx), ww))));
        const [gp, gw] = tf.grads(f)([p, w]);
        return [Array.from(gp.dataSync()), Array.from(gw.dataSync())];
      });
    const ref = await on("cpu", run);
    const got = await on("wasm", run);
    expectClose(got[0], ref[0], 1e-5);
    expectClose(got[1], ref[1], 1e-5);
    expect(ref[0].some((v) => v !== 0)).toBe(true);

    // Heap bytes of one recorded forward+backward: the tape clones every saved input/output (Identity); with the
    // shared Identity those clones allocate nothing, with the copying one they allocate at least one copy of x and w.
    const be = tf.backend() as unknown as WasmBackendInternals;
    const x = randn([64, 32], 23);
    const w = randn([32, 48], 24);
    const tape = () =>
      tf.tidy(() => {
        tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.relu(tf.matMul(a, b))))([x, w]);
      });
    tape();
    const n0 = tf.memory().numTensors;
    const d0 = be.numDataIds();
    const shared = wasmBytesAllocated(tape);
    setWasmSharedIdentity(false);
    let copied: number;
    try {
      copied = wasmBytesAllocated(tape);
    } finally {
      setWasmSharedIdentity(true);
    }
    expect(copied - shared).toBeGreaterThanOrEqual((x.size + w.size) * 4);
    expect(wasmBytesAllocated(() => tf.clone(x).dispose())).toBe(0);
    expect(tf.memory().numTensors).toBe(n0);
    expect(be.numDataIds()).toBe(d0);
    tf.dispose([x, w]);
  });
});
