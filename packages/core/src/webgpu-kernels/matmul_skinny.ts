/**
 * Skinny matmul for tfjs-backend-webgpu 4.22: products where one side of the output has m <= 16 columns (the rows in
 * flight while decoding, G = 8 samples) and the other side is a weight's row count R (hundreds to 150k).
 *
 * The model's decode-time products are all of this kind: every Linear.applyT is W [R, K] x xT [K, m] (tfjs's A is
 * the weight, no transposes), and the lm_head in vocabulary chunks is h [m, K] x W [R, K]ᵀ (transposeB). tfjs picks
 * its 32x32-tile packed program for them: with m = 1..16 most of each tile is padding (up to 31/32 of the work and
 * of the B-tile loads are wasted), and only R/32 workgroups of 64 threads exist, too few to keep a large GPU's memory
 * system busy. The product is memory-bound (each weight element is used m times), so this kernel instead:
 *  - reads each weight element exactly once, as vec4 loads along K (when K % 4 == 0), for all m columns at once
 *    (the activation as vec4 too: along K when it is stored K-contiguous, along m when it is [K, m] with m % 4 == 0);
 *  - gives each workgroup `rows` weight rows (R / rows workgroups) and splits K over its threads, each thread keeping
 *    rows x m partial sums in registers (straight-line code, m is a compile-time constant of the shader);
 *  - adds the threads' partial sums with a fixed tree in workgroup memory: no float atomics, so every run is
 *    bit-identical (and the summation is pairwise, slightly more accurate than one long running sum).
 * It is used only where the weight operand is contiguous along K (above); other skinny layouts (e.g. dyᵀ x W in the
 * backward pass) keep tfjs's program. Batch dims are supported when both operands have the same batch size or one
 * has batch 1 (broadcast), the cases tfjs 4.22's own program computes correctly.
 */
import * as tf from "@tensorflow/tfjs-core";
import { getWebgpuInfo } from "../webgpu";
import { flatLayout, MAIN, type WebgpuBackendLike, type WgslProgram } from "./program";

/** Largest skinny side routed to this kernel. */
export const SKINNY_MAX_M = 16;
/** Smallest weight row count and inner size routed to it (below those the product is tiny; tfjs's choice is fine). */
export const SKINNY_MIN_ROWS = 16;
export const SKINNY_MIN_K = 32;

/** Work split of the skinny kernel; {@link setSkinnyMatmulConfig} overrides it (benches, tuning on a GPU). */
export interface SkinnyConfig {
  /** Threads per workgroup, splitting K (a power of two, 32..256). */
  workgroupSize: number;
  /** Weight rows per workgroup, or 0 for automatic (as many as keep rows·m <= 32 partial sums per thread, at most 4). */
  rows: number;
}

/**
 * Defaults. A GPU: 64 threads, automatic rows (R / rows workgroups, many threads in flight for a memory-bound
 * product; not yet measured on a GPU). A software adapter (llvmpipe runs invocations on a few CPU threads, where a
 * workgroup reduction is costly): 32 threads and 4 rows, the fastest split measured there (bench/matmul-gpu.ts).
 */
const GPU_CONFIG: SkinnyConfig = { workgroupSize: 64, rows: 0 };
const SOFTWARE_CONFIG: SkinnyConfig = { workgroupSize: 32, rows: 4 };
let override: SkinnyConfig | null = null;

function defaultConfig(): SkinnyConfig {
  return getWebgpuInfo()?.software ? SOFTWARE_CONFIG : GPU_CONFIG;
}

/** The work split in use. */
export function skinnyMatmulConfig(): SkinnyConfig {
  return override ?? defaultConfig();
}

/** Overrides the work split (a partial config merges into the adapter's default); call with no argument to restore the default. */
export function setSkinnyMatmulConfig(c?: Partial<SkinnyConfig>): void {
  if (!c) {
    override = null;
    return;
  }
  const next = { ...defaultConfig(), ...c };
  const wg = next.workgroupSize;
  if (!Number.isInteger(wg) || wg < 32 || wg > 256 || (wg & (wg - 1)) !== 0) throw new RangeError(`skinny matmul: workgroupSize ${wg} is not a power of two in 32..256`);
  if (!Number.isInteger(next.rows) || next.rows < 0 || next.rows > 8) throw new RangeError(`skinny matmul: rows ${next.rows} is not an integer in 0..8`);
  override = next;
}

/** Rows per workgroup for m skinny columns: partial sums rows·m per thread <= 32 and rows·m·wg <= 4096 (16 KiB of workgroup memory). */
export function skinnyRows(m: number, wg: number, rows = skinnyMatmulConfig().rows): number {
  const cap = Math.max(1, Math.floor(Math.min(32, 4096 / wg) / m));
  return Math.min(rows > 0 ? rows : 4, cap);
}

/**
 * The product seen as out(r, j) = Σ_k W(r, k) · X(k, j) over a weight W stored [batch, R, K] (K contiguous) and a
 * skinny X [batch, K, m] or [batch, m, K]. Null when the product is not one this kernel takes.
 */
export interface SkinnyPlan {
  /** Which tfjs input is the weight: "a" (W = A, out [.., R, m]) or "b" (W = Bᵀ, out [.., m, R]). */
  weight: "a" | "b";
  R: number;
  K: number;
  m: number;
  /** X stored [batch, m, K] (K contiguous per column) rather than [batch, K, m]. */
  xKContiguous: boolean;
  batchW: number;
  batchX: number;
  /** The tfjs output shape (broadcast batch dims + [M, N]). */
  outShape: number[];
}

/** Whether (and how) the skinny kernel computes matMul(a, b, transposeA, transposeB); null keeps tfjs's program. */
export function planSkinny(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): SkinnyPlan | null {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) return null;
  const M = transposeA ? aShape[ra - 1] : aShape[ra - 2];
  const N = transposeB ? bShape[rb - 2] : bShape[rb - 1];
  const K = transposeA ? aShape[ra - 2] : aShape[ra - 1];
  const batchA = tf.util.sizeFromShape(aShape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(bShape.slice(0, -2));
  if (!(batchA === batchB || batchA === 1 || batchB === 1)) return null;
  if (K < SKINNY_MIN_K) return null;
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
  } catch {
    return null;
  }
  if (tf.util.sizeFromShape(outer) !== Math.max(batchA, batchB)) return null;
  const outShape = [...outer, M, N];
  // A is the weight [R = M, K] (K contiguous) when the output has few columns; Bᵀ is when it has few rows.
  const asA = !transposeA && N <= SKINNY_MAX_M && M >= SKINNY_MIN_ROWS;
  const asB = transposeB && M <= SKINNY_MAX_M && N >= SKINNY_MIN_ROWS;
  // (m = 1: X [K, 1] is X [1, K] in memory, K contiguous either way.)
  if (asA && (!asB || M >= N)) {
    return { weight: "a", R: M, K, m: N, xKContiguous: transposeB || N === 1, batchW: batchA, batchX: batchB, outShape };
  }
  if (asB) return { weight: "b", R: N, K, m: M, xKContiguous: !transposeA || M === 1, batchW: batchB, batchX: batchA, outShape };
  return null;
}

export function skinnyMatmulOn(): boolean {
  return process.env.RARL_WEBGPU_TUNED_MATMUL !== "0";
}

/** The WGSL program: one workgroup per `rows` weight rows (x, y: a 2-D grid when there are more than 32768), batch on z. */
export function skinnyProgram(plan: SkinnyPlan, wg = skinnyMatmulConfig().workgroupSize, rowsOpt = skinnyMatmulConfig().rows): WgslProgram & { variableComponents: number[] } {
  const { R, K, m, xKContiguous, weight } = plan;
  const rows = skinnyRows(m, wg, rowsOpt);
  const vec = K % 4 === 0;
  const xVec = vec && xKContiguous;
  const groups = Math.ceil(R / rows);
  const gx = Math.min(groups, 32768);
  const gy = Math.ceil(groups / gx);
  const batch = Math.max(plan.batchW, plan.batchX);
  // X [K, m] with m % 4 == 0: columns read as vec4 along m (m/4 loads per k) into vec4 accumulators.
  const jVec = !xKContiguous && m % 4 === 0;
  // The bindings keep tfjs's input names (A, B), so errors about them (e.g. the binding-size guard) name the matmul's input.
  const [wName, xName] = weight === "a" ? ["A", "B"] : ["B", "A"];
  // The WGSL text is built only when tfjs compiles the program (a pipeline-cache miss), not on every dispatch.
  const getUserCode = () => {
    const q4 = m / 4;
    const lines: string[] = [];
    const decl: string[] = [];
    const stores: string[] = [];
    if (jVec) {
      for (let p = 0; p < rows; p++) for (let q = 0; q < q4; q++) decl.push(`var acc_${p}_${q} = vec4<f32>(0.0);`);
      const ks = vec ? 4 : 1;
      for (let c = 0; c < ks; c++) for (let q = 0; q < q4; q++) lines.push(`let x${c}_${q} = X[xBase + (${ks} * kk + ${c}) * ${q4} + ${q}];`);
      for (let p = 0; p < rows; p++) {
        lines.push(`let w${p} = W[wRow${p} + kk];`);
        for (let q = 0; q < q4; q++) {
          let e = `acc_${p}_${q}`;
          for (let c = 0; c < ks; c++) e = `fma(vec4<f32>(w${p}${vec ? `[${c}]` : ""}), x${c}_${q}, ${e})`;
          lines.push(`acc_${p}_${q} = ${e};`);
        }
      }
      for (let p = 0; p < rows; p++) for (let j = 0; j < m; j++) stores.push(`red[${(p * m + j) * wg} + tid] = acc_${p}_${j >> 2}[${j & 3}];`);
    } else {
      for (let p = 0; p < rows; p++) for (let j = 0; j < m; j++) decl.push(`var acc_${p}_${j} = 0.0;`);
      // Body of the K loop at step `kk` (vec4 index when vec, element index otherwise).
      for (let j = 0; j < m; j++) {
        if (xVec) lines.push(`let x${j} = X[xBase + ${j} * KV + kk];`);
        else if (vec) lines.push(`let x${j} = vec4<f32>(X[xBase + (4 * kk) * ${m} + ${j}], X[xBase + (4 * kk + 1) * ${m} + ${j}], X[xBase + (4 * kk + 2) * ${m} + ${j}], X[xBase + (4 * kk + 3) * ${m} + ${j}]);`);
        else lines.push(`let x${j} = X[xBase + ${xKContiguous ? `${j} * K + kk` : `kk * ${m} + ${j}`}];`);
      }
      for (let p = 0; p < rows; p++) {
        lines.push(`let w${p} = W[wRow${p} + kk];`);
        for (let j = 0; j < m; j++) lines.push(vec ? `acc_${p}_${j} += dot(w${p}, x${j});` : `acc_${p}_${j} = fma(w${p}, x${j}, acc_${p}_${j});`);
      }
      for (let p = 0; p < rows; p++) for (let j = 0; j < m; j++) stores.push(`red[${(p * m + j) * wg} + tid] = acc_${p}_${j};`);
    }
    const rowBases: string[] = [];
    for (let p = 0; p < rows; p++) rowBases.push(`let wRow${p} = wBase + min(row0 + ${p}, R - 1) * KV;`);
    const tree: string[] = [];
    for (let s = wg / 2; s >= 1; s /= 2) {
      tree.push(`if (tid < ${s}) { for (var o = 0; o < ${rows * m}; o++) { red[o * ${wg} + tid] += red[o * ${wg} + tid + ${s}]; } }`);
      tree.push("workgroupBarrier();");
    }
    const named = (code: string) =>
      code
        .replaceAll("W[", `${wName}[`)
        .replaceAll("X[", `${xName}[`)
        .replaceAll("uniforms.wShape", `uniforms.${wName.toLowerCase()}Shape`)
        .replaceAll("uniforms.xShape", `uniforms.${xName.toLowerCase()}Shape`);
    return named(`
      var<workgroup> red : array<f32, ${rows * m * wg}>;
      ${MAIN} {
        let tid = i32(localId.x);
        let R = uniforms.wShape.y;
        let K = uniforms.wShape.z;
        let KV = ${vec ? "K / 4" : "K"};
        let b = i32(workgroupId.z);
        let row0 = i32(workgroupId.y * numWorkgroups.x + workgroupId.x) * ${rows};
        let wBase = (b % uniforms.wShape.x) * R * KV;
        let xBase = (b % uniforms.xShape.x) * ${xVec ? `${m} * KV` : jVec ? `${q4} * K` : `${m} * K`};
        let outBase = b * R * ${m};
        ${rowBases.join("\n      ")}
        ${decl.join("\n      ")}
        for (var kk = tid; kk < KV; kk += ${wg}) {
          ${lines.join("\n        ")}
        }
        ${stores.join("\n      ")}
        workgroupBarrier();
        ${tree.join("\n      ")}
        if (tid < ${rows * m}) {
          let r = row0 + tid / ${m};
          let j = tid % ${m};
          if (r < R) {
            result[${weight === "a" ? `outBase + r * ${m} + j` : "outBase + j * R + r"}] = red[tid * ${wg}];
          }
        }
      }`);
  };
  return {
    variableNames: [wName, xName],
    outputShape: weight === "a" ? [batch, R, m] : [batch, m, R],
    dispatchLayout: flatLayout(3),
    dispatch: [gx, gy, batch],
    workgroupSize: [wg, 1, 1],
    shaderKey: `rarl_mm_skinny_${weight}_${m}_${rows}_${wg}_${vec}_${xKContiguous}`,
    variableComponents: [vec ? 4 : 1, xVec || jVec ? 4 : 1],
    getUserCode,
  };
}

/**
 * Runs the skinny kernel for matMul(a, b, transposeA, transposeB) as planned; returns the tfjs output (shape
 * plan.outShape). The caller has checked float32 inputs.
 */
export function runSkinny(backend: WebgpuBackendLike, a: tf.TensorInfo, b: tf.TensorInfo, plan: SkinnyPlan): tf.TensorInfo {
  const reshape = tf.getKernel("Reshape", "webgpu")!.kernelFunc;
  const [w, x] = plan.weight === "a" ? [a, b] : [b, a];
  const w3 = reshape({ inputs: { x: w }, backend, attrs: { shape: [plan.batchW, plan.R, plan.K] } }) as tf.TensorInfo;
  const xShape = plan.xKContiguous ? [plan.batchX, plan.m, plan.K] : [plan.batchX, plan.K, plan.m];
  const x3 = reshape({ inputs: { x }, backend, attrs: { shape: xShape } }) as tf.TensorInfo;
  try {
    const res = backend.runWebGPUProgram(skinnyProgram(plan), [w3, x3], "float32");
    const out = reshape({ inputs: { x: res }, backend, attrs: { shape: plan.outShape } }) as tf.TensorInfo;
    backend.disposeData(res.dataId);
    return out;
  } finally {
    backend.disposeData(w3.dataId);
    backend.disposeData(x3.dataId);
  }
}
