import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { Rng } from "../rng";
import { relErr } from "../testing/compare";
import { webgpuSkipReason } from "../testing/webgpu";
import { AttentionShapeError, attentionComposite, fusedAttention } from "./attention";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();

/** float32 finfo.min, the model's masked value. */
const MASK_MIN = -3.4028234663852886e38;

/**
 * One attention problem: B rows, nh query heads over kvh kv heads, S new queries after `past` cached keys of
 * head dim D; row b has pad[b] left-padding positions (masked keys); with `prompts`, the first Tp keys of row b
 * are shared prompt rowPrompt[b]'s (P prompts) and k/v hold only the Ts = past + S - Tp keys after them.
 */
interface Case {
  name: string;
  B: number;
  nh: number;
  kvh: number;
  S: number;
  past: number;
  D: number;
  pad: number[];
  prompts?: { Tp: number; rowPrompt: number[] };
}

interface Data {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  mask: Float32Array;
  pk?: Float32Array;
  pv?: Float32Array;
  P: number;
  Tp: number;
  Ts: number;
  T: number;
}

function randn(rng: Rng, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** Causal + left-padding additive mask [B, 1, S, T], as @rarl/model's buildAttentionMask. */
function causalMask(B: number, S: number, past: number, pad: number[]): Float32Array {
  const T = past + S;
  const m = new Float32Array(B * S * T);
  for (let b = 0; b < B; b++)
    for (let i = 0; i < S; i++) for (let j = 0; j < T; j++) m[(b * S + i) * T + j] = j > past + i || j < pad[b] ? MASK_MIN : 0;
  return m;
}

function makeData(c: Case, seed: number): Data {
  const rng = new Rng(seed);
  const T = c.past + c.S;
  const Tp = c.prompts?.Tp ?? 0;
  const Ts = T - Tp;
  const P = c.prompts ? Math.max(...c.prompts.rowPrompt) + 1 : 0;
  // scores of a few units (as in a trained model), so the softmax is neither flat nor one-hot
  const qs = 2 / Math.sqrt(Math.sqrt(c.D));
  return {
    q: randn(rng, c.B * c.nh * c.S * c.D, qs),
    k: randn(rng, c.B * c.kvh * Ts * c.D, qs),
    v: randn(rng, c.B * c.kvh * Ts * c.D, 1),
    mask: causalMask(c.B, c.S, c.past, c.pad),
    pk: c.prompts ? randn(rng, P * c.kvh * Tp * c.D, qs) : undefined,
    pv: c.prompts ? randn(rng, P * c.kvh * Tp * c.D, 1) : undefined,
    P,
    Tp,
    Ts,
    T,
  };
}

type Op = typeof fusedAttention;

/** y = op(...) and the gradients of sum(y · c) w.r.t. q, k, v (and the prompt k, v), c a fixed random cotangent. */
async function run(backend: string, op: Op, c: Case, d: Data): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const q = tf.tensor4d(d.q, [c.B, c.nh, c.S, c.D]);
  const k = tf.tensor4d(d.k, [c.B, c.kvh, d.Ts, c.D]);
  const v = tf.tensor4d(d.v, [c.B, c.kvh, d.Ts, c.D]);
  const mask = tf.tensor4d(d.mask, [c.B, 1, c.S, d.T]);
  const prefixShape: [number, number, number, number] = [d.P, c.kvh, d.Tp, c.D];
  const pk = d.pk && tf.tensor4d(d.pk, prefixShape);
  const pv = d.pv && tf.tensor4d(d.pv, prefixShape);
  const rowPrompt = c.prompts && tf.tensor1d(c.prompts.rowPrompt, "int32");
  const prefix = (a?: tf.Tensor, b?: tf.Tensor) => (rowPrompt ? { k: a as tf.Tensor4D, v: b as tf.Tensor4D, rowPrompt } : undefined);
  const cot = tf.tidy(() => tf.randomUniform([c.B, c.S, c.nh * c.D], -1, 1, "float32", 11));
  const y = op(q, k, v, mask, prefix(pk, pv));
  expect(y.shape).toEqual([c.B, c.S, c.nh * c.D]);
  const xs = [q, k, v, ...(pk && pv ? [pk, pv] : [])];
  const gs = tf.grads((...a: tf.Tensor[]) => tf.sum(tf.mul(op(a[0] as tf.Tensor4D, a[1] as tf.Tensor4D, a[2] as tf.Tensor4D, mask, prefix(a[3], a[4])), cot)))(xs);
  const out = [(await y.data()) as Float32Array];
  for (const g of gs) out.push((await g.data()) as Float32Array);
  tf.dispose([q, k, v, mask, cot, y, ...gs, ...(pk && pv && rowPrompt ? [pk, pv, rowPrompt] : [])]);
  return out;
}

/** Plain float64 attention over the full keys (the prompt's, then the row's own), for one problem. */
function reference(c: Case, d: Data): Float64Array {
  const G = c.nh / c.kvh;
  const out = new Float64Array(c.B * c.S * c.nh * c.D);
  const key = (b: number, h: number, t: number, x: "k" | "v", e: number): number => {
    if (t < d.Tp) {
      const p = c.prompts!.rowPrompt[b];
      return (x === "k" ? d.pk! : d.pv!)[((p * c.kvh + h) * d.Tp + t) * c.D + e];
    }
    return (x === "k" ? d.k : d.v)[((b * c.kvh + h) * d.Ts + t - d.Tp) * c.D + e];
  };
  for (let b = 0; b < c.B; b++)
    for (let j = 0; j < c.nh; j++)
      for (let s = 0; s < c.S; s++) {
        const h = Math.floor(j / G);
        const sc = new Float64Array(d.T);
        for (let t = 0; t < d.T; t++) {
          let dot = 0;
          for (let e = 0; e < c.D; e++) dot += d.q[((b * c.nh + j) * c.S + s) * c.D + e] * key(b, h, t, "k", e);
          // float32 rounding of score + finfo.min keeps finfo.min (|score| is far below its ulp)
          const m = d.mask[(b * c.S + s) * d.T + t];
          sc[t] = m === MASK_MIN ? m : dot / Math.sqrt(c.D) + m;
        }
        const mx = Math.max(...sc);
        const e = sc.map((x) => Math.exp(x - mx));
        const z = e.reduce((a, x) => a + x, 0);
        for (let f = 0; f < c.D; f++) {
          let a = 0;
          for (let t = 0; t < d.T; t++) a += (e[t] / z) * key(b, h, t, "v", f);
          out[((b * c.S + s) * c.nh + j) * c.D + f] = a;
        }
      }
  return out;
}

const cases: Case[] = [
  // prefill: causal + left padding; row 1's first two queries see only padding (every key masked)
  { name: "prefill G=2 S=T=6, padded row", B: 2, nh: 4, kvh: 2, S: 6, past: 0, D: 16, pad: [0, 2] },
  // decode over a cache longer than one 64-key tile; row 2's padding fills the whole first tile
  { name: "decode G=1 S=1 T=140, padded rows", B: 3, nh: 2, kvh: 2, S: 1, past: 139, D: 8, pad: [0, 3, 70] },
  { name: "decode G=3 S=1 T=70", B: 2, nh: 6, kvh: 2, S: 1, past: 69, D: 32, pad: [5, 0] },
  // several new queries after a cache; G·S = 27 query rows per kv head: 4 workgroups of 8 rows, the last partial
  { name: "chunk G=3 S=9 after 7 cached, D=80", B: 2, nh: 3, kvh: 1, S: 9, past: 7, D: 80, pad: [0, 4] },
  // D = 384: 96 vec4 slots, more than the 64 threads (each holds two), 5 query rows per workgroup
  { name: "D=384 G=2 S=3 after 2 cached", B: 1, nh: 2, kvh: 1, S: 3, past: 2, D: 384, pad: [1] },
  // shared prompt prefix: 3 prompts of Tp = 5 (one padded), rows in runs of their prompt, 2 own keys each
  { name: "shared prefix P=3 Tp=5, G=2, decode", B: 5, nh: 4, kvh: 2, S: 1, past: 6, D: 16, pad: [0, 0, 2, 2, 0], prompts: { Tp: 5, rowPrompt: [0, 0, 1, 1, 2] } },
  { name: "shared prefix P=2 Tp=70, G=2, S=2", B: 3, nh: 2, kvh: 1, S: 2, past: 70, D: 8, pad: [0, 66, 66], prompts: { Tp: 70, rowPrompt: [0, 1, 1] } },
];

describe("fusedAttention off webgpu", () => {
  it("is the tfjs composite on cpu (same values, same gradients), and the composite is attention in float64 (1e-5)", async () => {
    for (const c of [cases[0], cases[4]]) {
      const d = makeData(c, 3);
      const a = await run("cpu", fusedAttention, c, d);
      const b = await run("cpu", attentionComposite, c, d);
      expect(a).toEqual(b);
      expect(relErr(a[0], Float32Array.from(reference(c, d)))).toBeLessThan(1e-5);
    }
  });

  it("a query whose keys are all masked gets the mean of every value (as softmax of a constant row)", async () => {
    const c = cases[0];
    const d = makeData(c, 4);
    const [y] = await run("cpu", fusedAttention, c, d);
    // row 1, query 0: keys 0..5 all masked (0, 1 padding, 2.. future); head 3 reads kv head 1
    const T = d.T;
    for (const f of [0, 7]) {
      let mean = 0;
      for (let t = 0; t < T; t++) mean += d.v[((1 * c.kvh + 1) * T + t) * c.D + f] / T;
      expect(y[((1 * c.S + 0) * c.nh + 3) * c.D + f]).toBeCloseTo(mean, 5);
    }
  });

  it("names the argument whose shape does not fit (AttentionShapeError)", () => {
    tf.tidy(() => {
      const q = tf.zeros([1, 4, 2, 8]) as tf.Tensor4D;
      const k = tf.zeros([1, 2, 3, 8]) as tf.Tensor4D;
      expect(() => fusedAttention(q, k, k, tf.zeros([1, 1, 2, 4]) as tf.Tensor4D)).toThrow(/mask must be additive \[1, 1, 2, 3\]/);
      expect(() => fusedAttention(q, tf.zeros([1, 3, 3, 8]) as tf.Tensor4D, k, tf.zeros([1, 1, 2, 3]) as tf.Tensor4D)).toThrow(AttentionShapeError);
      const rowPrompt = tf.tensor1d([0], "float32");
      expect(() => fusedAttention(q, k, k, tf.zeros([1, 1, 2, 5]) as tf.Tensor4D, { k: tf.zeros([1, 2, 2, 8]), v: tf.zeros([1, 2, 2, 8]), rowPrompt })).toThrow(
        /prefix.rowPrompt must be int32 \[1\]/,
      );
    });
  });
});

describe.skipIf(why !== null)(`webgpu fused attention vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  for (const c of cases) {
    it(`${c.name}: forward within 1e-5 and gradients within 1e-4 of the cpu composite`, async () => {
      const d = makeData(c, c.B * 100 + c.S * 10 + c.D);
      const cpu = await run("cpu", attentionComposite, c, d);
      const gpu = await run("webgpu", fusedAttention, c, d);
      expect(relErr(gpu[0], cpu[0])).toBeLessThan(1e-5);
      const names = ["dq", "dk", "dv", "dprefix.k", "dprefix.v"];
      for (let i = 1; i < cpu.length; i++) expect(relErr(gpu[i], cpu[i]), names[i - 1]).toBeLessThan(1e-4);
    });
  }

  it("runs one RarlAttention kernel (no Softmax, no BatchMatMul), deterministic, and leaks no tensors across calls", async () => {
    const c = cases[2];
    const d = makeData(c, 9);
    await tf.setBackend("webgpu");
    const q = tf.tensor4d(d.q, [c.B, c.nh, c.S, c.D]);
    const k = tf.tensor4d(d.k, [c.B, c.kvh, d.Ts, c.D]);
    const v = tf.tensor4d(d.v, [c.B, c.kvh, d.Ts, c.D]);
    const mask = tf.tensor4d(d.mask, [c.B, 1, c.S, d.T]);
    const prof = await tf.profile(() => fusedAttention(q, k, v, mask));
    const names = prof.kernels.map((x) => x.name);
    expect(names).toContain("RarlAttention");
    expect(names.filter((x) => /Softmax|BatchMatMul|Transpose/.test(x))).toEqual([]);
    const first = await (prof.result as tf.Tensor).data();
    tf.dispose(prof.result as tf.Tensor);
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const y = fusedAttention(q, k, v, mask);
      expect(await y.data()).toEqual(first);
      y.dispose();
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor, e: tf.Tensor) => tf.sum(fusedAttention(a as tf.Tensor4D, b as tf.Tensor4D, e as tf.Tensor4D, mask)))([q, k, v]));
      expect(tf.memory().numTensors).toBe(n0);
    }
    tf.dispose([q, k, v, mask]);
  });
});
