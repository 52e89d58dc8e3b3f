import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { initBackend } from "../backend";
import { relErr } from "../testing/compare";
import { webgpuSkipReason } from "../testing/webgpu";
import { planLayout } from "./matmul_layout";
import { type MatmulCase, matmulProduct as product, programsRun, randn } from "./matmul-testing";

await initBackend({ prefer: ["cpu"] });
const why = await webgpuSkipReason();


type Case = MatmulCase;


/** isVec4 of each tfjs packed matmul program run (its shader key: matMulPacked_<ept>_<tA>_<tB>_<act>_<fitA>_<fitB>_<fitInner>_<isVec4>_...). */
const packedVec4 = (keys: string[]) => keys.filter((k) => k.startsWith("matMulPacked_")).map((k) => k.split("_")[8] === "true");


describe("planLayout (which large products are rewritten for tfjs's vec4 program)", () => {
  it("pads N to a multiple of 4, transposes B or swaps the product under transposeB, whichever copies less", () => {
    expect(planLayout([1536, 1536], [1536, 257], false, false)).toEqual({ kind: "padN", N4: 260 });
    expect(planLayout([2, 12, 281, 128], [2, 12, 128, 281], false, false)).toEqual({ kind: "padN", N4: 284 }); // attention scores
    expect(planLayout([256, 1536], [21845, 1536], false, true)).toEqual({ kind: "swap" }); // lm_head chunk over 256 tokens
    expect(planLayout([4096, 64], [40, 64], false, true)).toEqual({ kind: "transposeB" }); // B much smaller than the output
    expect(planLayout([256, 100], [120, 256], true, true)).toEqual({ kind: "swap" }); // Aᵀ is free; the output is smaller than B
    expect(planLayout([64, 100], [120, 64], true, true)).toEqual({ kind: "transposeB" }); // B is smaller than the output
  });
  it("leaves vec4-ready, skinny, small and odd-inner products to the other routes", () => {
    expect(planLayout([1536, 1536], [1536, 256], false, false)).toBeNull(); // already vec4
    expect(planLayout([1536, 1536], [1536, 9], false, false)).toBeNull(); // skinny
    expect(planLayout([20, 20], [20, 21], false, false)).toBeNull(); // small
    expect(planLayout([64, 64], [64, 65], false, false)).toBeNull(); // 2 x 3 tiles: tfjs's small-output program
    expect(planLayout([1536, 1535], [1535, 257], false, false)).toBeNull(); // K % 4 != 0: no vec4 program either way
    expect(planLayout([300, 63], [300, 63], false, true)).toBeNull();
    expect(planLayout([2, 300, 64], [3, 300, 64], false, true)).toBeNull(); // batch 2 vs 3
    expect(planLayout([1536, 1536], [1536, 257], false, false, 8, 1536 * 257 * 4)).toBeNull(); // padded B would exceed one binding
  });
});

describe.skipIf(why !== null)(`webgpu matmul layout rewrites vs cpu${why ? ` (skipped: ${why})` : ""}`, () => {
  const cases: Case[] = [
    { a: [100, 64], b: [64, 101], label: "N % 4 != 0: padded" },
    { a: [2, 3, 40, 32], b: [2, 3, 32, 29], label: "batched, N % 4 != 0 (attention scores over 29 keys)" },
    { a: [70, 32], b: [3, 32, 45], label: "broadcast A, N % 4 != 0" },
    { a: [97, 64], b: [130, 64], tB: true, label: "h x Wᵀ: swapped (M padded)" },
    { a: [300, 64], b: [20, 64], tB: true, label: "transposeB with a small B: B transposed" },
    { a: [64, 97], b: [130, 64], tA: true, tB: true, label: "Aᵀ x Bᵀ: swapped, output M padded" },
    { a: [2, 40, 64], b: [2, 70, 64], tB: true, label: "batched transposeB" },
  ];
  for (const c of cases) {
    it(`[${c.a}]${c.tA ? "ᵀ" : ""} x [${c.b}]${c.tB ? "ᵀ" : ""} (${c.label}): tfjs's vec4 program only, matches cpu within 1e-5, bit-identical on a rerun`, async () => {
      const a = randn(c.a, c.a.length * 10 + c.a[0]);
      const b = randn(c.b, c.b.length * 10 + c.b[0] + 1);
      const cpu = await product("cpu", c, a, b);
      let g1 = cpu;
      const keys = await programsRun(async () => {
        g1 = await product("webgpu", c, a, b);
      });
      const vec = packedVec4(keys);
      expect(vec.length).toBeGreaterThan(0);
      expect(vec.every((v) => v)).toBe(true);
      const g2 = await product("webgpu", c, a, b);
      expect(g1.shape).toEqual(cpu.shape);
      expect(relErr(g1.y, cpu.y)).toBeLessThan(1e-5);
      expect(Array.from(g2.y)).toEqual(Array.from(g1.y));
    });
  }

  it("RARL_WEBGPU_TUNED_MATMUL=0: tfjs's scalar program, same values", async () => {
    const c = cases[3];
    const a = randn(c.a, 1);
    const b = randn(c.b, 2);
    const tuned = await product("webgpu", c, a, b);
    process.env.RARL_WEBGPU_TUNED_MATMUL = "0";
    try {
      let plain = tuned;
      const keys = await programsRun(async () => {
        plain = await product("webgpu", c, a, b);
      });
      expect(packedVec4(keys)).toEqual([false]);
      expect(relErr(plain.y, tuned.y)).toBeLessThan(1e-5);
    } finally {
      delete process.env.RARL_WEBGPU_TUNED_MATMUL;
    }
  });

  it("gradients through rewritten products match cpu; no tensor leaks across calls", async () => {
    const grads = async (backend: string) => {
      await tf.setBackend(backend);
      const x = tf.tensor(randn([97, 64], 3), [97, 64]);
      const w = tf.tensor(randn([130, 64], 4), [130, 64]);
      const c = tf.tensor(randn([97, 130], 5), [97, 130]);
      const f = (p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.matMul(p, q, false, true), c));
      const [dx, dw] = tf.grads(f)([x, w]);
      const out = [(await dx.data()) as Float32Array, (await dw.data()) as Float32Array];
      tf.dispose([dx, dw]);
      if (backend === "webgpu") {
        const n0 = tf.memory().numTensors;
        for (let i = 0; i < 3; i++) {
          tf.dispose(tf.grads(f)([x, w]));
          tf.dispose(tf.matMul(x, w, false, true));
          expect(tf.memory().numTensors).toBe(n0);
        }
      }
      tf.dispose([x, w, c]);
      return out;
    };
    const cpu = await grads("cpu");
    const gpu = await grads("webgpu");
    expect(relErr(gpu[0], cpu[0])).toBeLessThan(1e-5);
    expect(relErr(gpu[1], cpu[1])).toBeLessThan(1e-5);
  });
});
