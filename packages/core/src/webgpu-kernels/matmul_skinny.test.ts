import * as tf from "@tensorflow/tfjs-core";
import { afterEach, describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { relErr } from "../testing/compare";
import { webgpuSkipReason } from "../testing/webgpu";
import { planSkinny, setSkinnyMatmulConfig, skinnyRows } from "./matmul_skinny";
import { type MatmulCase, matmulProduct as product, programsRun, randn } from "./matmul-testing";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();


type Case = MatmulCase;



describe("planSkinny (which products the skinny kernel takes)", () => {
  it("takes W [R, K] x xT [K, m] (Linear.applyT) and h [m, K] x W [R, K]ᵀ (lm_head chunk) for m <= 16", () => {
    expect(planSkinny([1536, 1536], [1536, 8], false, false)).toMatchObject({ weight: "a", R: 1536, K: 1536, m: 8, xKContiguous: false, outShape: [1536, 8] });
    expect(planSkinny([8960, 1536], [1, 1536], false, true)).toMatchObject({ weight: "a", R: 8960, m: 1, xKContiguous: true });
    expect(planSkinny([16, 1536], [21845, 1536], false, true)).toMatchObject({ weight: "b", R: 21845, m: 16, xKContiguous: true, outShape: [16, 21845] });
    expect(planSkinny([1536, 4], [21845, 1536], true, true)).toMatchObject({ weight: "b", m: 4, xKContiguous: false });
    expect(planSkinny([2, 3, 40, 64], [64, 5], false, false)).toMatchObject({ batchW: 6, batchX: 1, outShape: [2, 3, 40, 5] });
  });
  it("leaves prefill-size, non-contiguous-weight, short-K and unbroadcastable products to tfjs", () => {
    expect(planSkinny([1536, 1536], [1536, 17], false, false)).toBeNull(); // m = 17 (prefill / training)
    expect(planSkinny([8, 1536], [1536, 1536], false, false)).toBeNull(); // dyᵀ x W: weight not K-contiguous
    expect(planSkinny([1536, 1536], [1536, 8], true, false)).toBeNull(); // transposed weight
    expect(planSkinny([1536, 16], [16, 8], false, false)).toBeNull(); // K = 16 (LoRA up-projection)
    expect(planSkinny([8, 1536], [1536, 8], false, false)).toBeNull(); // 8 x 8 output: no wide side
    expect(planSkinny([2, 40, 64], [3, 64, 4], false, false)).toBeNull(); // batch 2 vs 3
    expect(planSkinny([2, 1, 40, 64], [1, 3, 64, 4], false, false)).toBeNull(); // batch [2,1] x [1,3]: tfjs flattens it wrongly too
  });
  it("keeps rows x m partial sums per thread <= 32 and the workgroup buffer <= 16 KiB", () => {
    expect(skinnyRows(1, 64, 0)).toBe(4);
    expect(skinnyRows(16, 64, 0)).toBe(2);
    expect(skinnyRows(16, 256, 0)).toBe(1);
    expect(skinnyRows(5, 64, 8)).toBe(6);
    for (const wg of [32, 64, 128, 256]) for (let m = 1; m <= 16; m++) expect(skinnyRows(m, wg, 8) * m * wg).toBeLessThanOrEqual(4096);
  });
});

describe.skipIf(why !== null)(`webgpu skinny matmul vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  afterEach(() => setSkinnyMatmulConfig());

  const cases: Case[] = [
    { a: [40, 64], b: [64, 3], label: "W x xT, vec4 weight, X [K, m]" },
    { a: [37, 45], b: [45, 5], label: "odd sizes (K % 4 != 0: scalar loads), R not a multiple of the rows per workgroup" },
    { a: [37, 45], b: [45, 4], label: "odd K, X columns as vec4 (m % 4 == 0)" },
    { a: [40, 64], b: [64, 8], label: "vec4 weight, X columns as vec4" },
    { a: [33, 128], b: [128, 1], label: "m = 1" },
    { a: [50, 96], b: [96, 16], label: "m = 16" },
    { a: [41, 64], b: [7, 64], tB: true, label: "W x Xᵀ (X [m, K], vec4 both)" },
    { a: [41, 63], b: [7, 63], tB: true, label: "W x Xᵀ, odd K" },
    { a: [3, 64], b: [70, 64], tB: true, label: "lm_head chunk: h x Wᵀ" },
    { a: [64, 6], b: [70, 64], tA: true, tB: true, label: "hᵀᵀ x Wᵀ (transposeA)" },
    { a: [64, 8], b: [70, 64], tA: true, tB: true, label: "hᵀᵀ x Wᵀ, X columns as vec4" },
    { a: [2, 24, 36], b: [2, 36, 4], label: "batch 2" },
    { a: [24, 36], b: [3, 36, 4], label: "broadcast weight over batch 3" },
    { a: [2, 3, 20, 48], b: [48, 2], label: "rank 4 batch, broadcast X" },
    { a: [2, 5, 40], b: [2, 33, 40], tB: true, label: "batched lm_head layout" },
  ];
  for (const c of cases) {
    it(`[${c.a}]${c.tA ? "ᵀ" : ""} x [${c.b}]${c.tB ? "ᵀ" : ""} (${c.label}): runs the skinny kernel, matches cpu within 1e-5, bit-identical on a rerun`, async () => {
      const a = randn(c.a, c.a.length * 100 + c.a[0]);
      const b = randn(c.b, c.b.length * 100 + c.b[0] + 1);
      const cpu = await product("cpu", c, a, b);
      let g1 = cpu;
      const keys = await programsRun(async () => {
        g1 = await product("webgpu", c, a, b);
      });
      expect(keys.some((k) => k.startsWith("rarl_mm_skinny"))).toBe(true);
      const g2 = await product("webgpu", c, a, b);
      expect(g1.shape).toEqual(cpu.shape);
      expect(relErr(g1.y, cpu.y)).toBeLessThan(1e-5);
      expect(Array.from(g2.y)).toEqual(Array.from(g1.y));
    });
  }

  it("every work split (workgroup 32..256 threads, 1..8 rows) gives the cpu result", async () => {
    const c: Case = { a: [45, 200], b: [200, 6], label: "" };
    const a = randn(c.a, 7);
    const b = randn(c.b, 8);
    const cpu = await product("cpu", c, a, b);
    for (const [workgroupSize, rows] of [
      [32, 1],
      [128, 3],
      [256, 8],
    ]) {
      setSkinnyMatmulConfig({ workgroupSize, rows });
      const g = await product("webgpu", c, a, b);
      expect(relErr(g.y, cpu.y), `wg ${workgroupSize} rows ${rows}`).toBeLessThan(1e-5);
    }
  });

  it("more than 32768 workgroups (a 2-D grid) covers every row", async () => {
    setSkinnyMatmulConfig({ rows: 1, workgroupSize: 32 });
    const c: Case = { a: [2, 32], b: [32800, 32], tB: true, label: "" };
    const a = randn(c.a, 9);
    const b = randn(c.b, 10);
    const cpu = await product("cpu", c, a, b);
    const g = await product("webgpu", c, a, b);
    expect(relErr(g.y, cpu.y)).toBeLessThan(1e-5);
  });

  it("a long inner dimension: within 1e-4 of cpu and bit-identical over three runs", async () => {
    const c: Case = { a: [24, 6000], b: [6000, 4], label: "" };
    const a = randn(c.a, 11);
    const b = randn(c.b, 12);
    const cpu = await product("cpu", c, a, b);
    const runs = [await product("webgpu", c, a, b), await product("webgpu", c, a, b), await product("webgpu", c, a, b)];
    expect(relErr(runs[0].y, cpu.y)).toBeLessThan(1e-4);
    expect(Array.from(runs[1].y)).toEqual(Array.from(runs[0].y));
    expect(Array.from(runs[2].y)).toEqual(Array.from(runs[0].y));
  });

  it("gradients through a skinny product match cpu", async () => {
    const grads = async (backend: string) => {
      await tf.setBackend(backend);
      const w = tf.tensor(randn([30, 48], 13), [30, 48]);
      const x = tf.tensor(randn([48, 3], 14), [48, 3]);
      const c = tf.tensor(randn([30, 3], 15), [30, 3]);
      const [dw, dx] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.matMul(p, q), c)))([w, x]);
      const out = [(await dw.data()) as Float32Array, (await dx.data()) as Float32Array];
      tf.dispose([w, x, c, dw, dx]);
      return out;
    };
    const cpu = await grads("cpu");
    const gpu = await grads("webgpu");
    expect(relErr(gpu[0], cpu[0])).toBeLessThan(1e-5);
    expect(relErr(gpu[1], cpu[1])).toBeLessThan(1e-5);
  });

  it("_FusedMatMul: plain goes to the skinny kernel; with bias and relu keeps tfjs's program, both match cpu", async () => {
    const a = randn([40, 64], 16);
    const b = randn([64, 3], 17);
    const bias = randn([3], 18);
    const run = async (backend: string, withBias: boolean) => {
      await tf.setBackend(backend);
      const y = tf.tidy(() =>
        tf.fused.matMul({ a: tf.tensor(a, [40, 64]), b: tf.tensor(b, [64, 3]), ...(withBias ? { bias: tf.tensor(bias, [3]), activation: "relu" as const } : {}) }),
      );
      const out = (await y.data()) as Float32Array;
      y.dispose();
      return out;
    };
    for (const withBias of [false, true]) {
      const cpu = await run("cpu", withBias);
      let gpu = cpu;
      const keys = await programsRun(async () => {
        gpu = await run("webgpu", withBias);
      });
      expect(keys.some((k) => k.startsWith("rarl_mm_skinny"))).toBe(!withBias);
      expect(relErr(gpu, cpu)).toBeLessThan(1e-5);
    }
  });

  it("RARL_WEBGPU_TUNED_MATMUL=0 keeps tfjs's program; tensors do not leak across calls", async () => {
    const c: Case = { a: [40, 64], b: [64, 3], label: "" };
    const a = randn(c.a, 19);
    const b = randn(c.b, 20);
    process.env.RARL_WEBGPU_TUNED_MATMUL = "0";
    try {
      const keys = await programsRun(async () => {
        await product("webgpu", c, a, b);
      });
      expect(keys.some((k) => k.startsWith("rarl_mm_skinny"))).toBe(false);
      expect(keys.some((k) => k.startsWith("matMul"))).toBe(true);
    } finally {
      delete process.env.RARL_WEBGPU_TUNED_MATMUL;
    }
    await tf.setBackend("webgpu");
    const at = tf.tensor(a, c.a);
    const bt = tf.tensor(b, c.b);
    tf.dispose(tf.matMul(at, bt));
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      tf.dispose(tf.matMul(at, bt));
      tf.dispose(tf.matMul(bt, at, true, true));
      expect(tf.memory().numTensors).toBe(n0);
    }
    tf.dispose([at, bt]);
  });
});
