/**
 * Fused grouped-query attention (Qwen2's eager attention): softmax(q·kᵀ/√D + mask)·v, query head j reading kv head
 * floor(j / G) (transformers' repeat_kv), for S new queries over T keys: prefill (S = T, causal + left-padding mask)
 * and decode (S = 1 over the KV cache), optionally with a shared prompt prefix (the first Tp keys of row b come from
 * prompt rowPrompt[b]'s keys, stored once per prompt; see @rarl/model's shareCache).
 *
 * `fusedAttention` is the op the model calls. On the webgpu backend its forward pass is one WGSL kernel (RarlAttention)
 * instead of tfjs's transpose, batched matmul, mul, add, softmax and batched matmul with two [B, heads, S, T]
 * intermediates, and it writes the heads merged ([B, S, heads·D], what o_proj reads), which saves the transpose
 * after it too. Its gradient is tf.customGrad with the analytic backward in plain tfjs ops (it recomputes the
 * probabilities). On every other backend (cpu, wasm, tensorflow) it is exactly the tfjs composite the model ran
 * before, autodiff included.
 *
 * The kernel: one workgroup of 64 threads per (batch row, kv head, block of R ≤ 8 query rows of that kv head's G·S
 * rows), so the G query heads sharing a kv head read each key/value once. Keys go by in tiles of 64 with an online
 * softmax (flash-attention style): per tile each thread scores one key against the R rows (vec4 dots over D in
 * order), 64 / R threads per row take the tile's max and exp-sums over consecutive keys (partials combined in lane
 * order) and the row's running max and sum are rescaled, then each thread accumulates p·v into its vec4 D-slots for
 * one group of the tile's keys (groups summed in order at the end). Every sum runs in a fixed order (no atomics):
 * the result is the same from run to run. Behaviour of the composite kept exactly where it matters:
 *  - a key whose mask entry is ≤ -FLT_MAX (finfo.min, the model's masked value) scores exactly that value, as
 *    q·k/√D + finfo.min rounds to it; its dot product is skipped. A tile whose keys are masked for every row of the
 *    block, in rows that already saw an unmasked key, adds exactly 0 and is skipped (the causal half in prefill);
 *  - a row whose every key is masked (the left-padding queries) has every score = -FLT_MAX, the running max stays
 *    -FLT_MAX (the seed, as in ./softmax.ts), and the row gets the uniform average of all T values, as on cpu;
 *  - a row of -inf masks gives 0/0 = NaN, as on cpu.
 */
import * as tf from "@tensorflow/tfjs-core";
import { bmm } from "../bmm";
import { RarlError } from "../errors";
import { flatLayout, MAIN, NEG_FLT_MAX, registerWebgpuKernel, type WebgpuBackendLike, type WgslProgram } from "./program";

/** Name of the fused kernel registered for the webgpu backend. */
export const ATTENTION_KERNEL = "RarlAttention";

/** Threads per workgroup, and keys per tile (q, k, v are read as vec4: the fused path needs D % 4 = 0). */
const WG = 64;
/** Most query rows per workgroup (they share each key/value read). */
const MAX_ROWS = 8;
/** R·D floats of queries sit in workgroup memory: at most 8 KiB of the 16 KiB every adapter offers. */
const MAX_ROW_FLOATS = 2048;
/** WebGPU's default maxComputeWorkgroupsPerDimension. */
const MAX_DISPATCH = 65535;

/** tf.customGrad's argument (its variadic (Tensor | GradSaveFunc)[] signature rejects named parameters). */
type CustomGradientFunc = Parameters<typeof tf.customGrad>[0];

/** Shared prompt keys/values: the first Tp keys of batch row b are prompt rowPrompt[b]'s. */
export interface AttentionPrefix {
  /** [P, kvHeads, Tp, D] keys of the P prompts (after RoPE). */
  k: tf.Tensor4D;
  /** [P, kvHeads, Tp, D] values of the P prompts. */
  v: tf.Tensor4D;
  /** int32 [B]: the prompt (index into P, each in [0, P): not checked, that would need a read-back) of each batch row. */
  rowPrompt: tf.Tensor1D;
}

/** Bad shapes or dtypes given to {@link fusedAttention}; `details.tensor` names the argument. */
export class AttentionShapeError extends RarlError {}

function bad(tensor: string, expected: string, got: tf.Tensor): never {
  throw new AttentionShapeError(`fusedAttention: ${tensor} must be ${expected}, got ${got.dtype} [${got.shape.join(", ")}]`, {
    code: "ATTENTION_BAD_SHAPE",
    details: { tensor, expected, shape: got.shape, dtype: got.dtype },
  });
}

/** Checks the arguments; returns [B, nh, kvh, S, D, Tp, Ts]. */
function dims(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor, prefix?: AttentionPrefix): number[] {
  if (q.rank !== 4) bad("q", "[B, heads, S, D]", q);
  const [B, nh, S, D] = q.shape as number[];
  const ks = k.shape as number[];
  if (k.rank !== 4 || ks[0] !== B || ks[3] !== D || nh % ks[1] !== 0) bad("k", `[${B}, kvHeads dividing ${nh}, T, ${D}]`, k);
  const [, kvh, Ts] = ks;
  if (!tf.util.arraysEqual(v.shape, k.shape)) bad("v", `the shape of k [${k.shape.join(", ")}]`, v);
  let Tp = 0;
  if (prefix) {
    const pk = prefix.k;
    if (pk.rank !== 4 || pk.shape[1] !== kvh || pk.shape[3] !== D) bad("prefix.k", `[P, ${kvh}, Tp, ${D}]`, pk);
    if (!tf.util.arraysEqual(prefix.v.shape, pk.shape)) bad("prefix.v", `the shape of prefix.k [${pk.shape.join(", ")}]`, prefix.v);
    if (prefix.rowPrompt.dtype !== "int32" || !tf.util.arraysEqual(prefix.rowPrompt.shape, [B])) bad("prefix.rowPrompt", `int32 [${B}]`, prefix.rowPrompt);
    Tp = pk.shape[2];
  }
  if (!tf.util.arraysEqual(mask.shape, [B, 1, S, Tp + Ts])) bad("mask", `additive [${B}, 1, ${S}, ${Tp + Ts}]`, mask);
  return [B, nh, kvh, S, D, Tp, Ts];
}

/** Query rows per workgroup for G·S rows of head dim D. */
function rowsPerGroup(GS: number, D: number): number {
  return Math.max(1, Math.min(MAX_ROWS, GS, Math.floor(MAX_ROW_FLOATS / D)));
}

function attentionProgram(B: number, nh: number, kvh: number, S: number, D: number, prefix: boolean): WgslProgram {
  const GS = (nh / kvh) * S;
  const R = rowsPerGroup(GS, D);
  const D4 = D / 4;
  // p·v phase: thread (g, d4) adds the tile's keys t ≡ g (mod NG) into vec4 slot d4 (NG key groups, summed at the
  // end in group order); past 256 dims (D4 > 64) one group, each thread holding SL slots d4 = tid + 64·i.
  const NG = D4 <= WG ? Math.floor(WG / D4) : 1;
  const SL = D4 <= WG ? 1 : Math.ceil(D4 / WG);
  // softmax phase: LN threads per row, each over KPL consecutive keys of the tile; partials combined in lane order.
  const LN = Math.floor(WG / R);
  const KPL = Math.ceil(WG / LN);
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const each = (f: (r: number) => string, sep = "\n") => range(R).map(f).join(sep);
  const slots = (f: (i: number, d4: string) => string) => range(SL).map((i) => f(i, NG > 1 ? "d4" : `(tid + ${i * WG})`)).join("\n");
  // One tile loop over keys [0, len) of one key/value buffer pair (vec4 elements from kb4); mask columns from maskOff.
  const segment = (kBuf: string, vBuf: string, len: string, kb4: string, maskOff: string) => `
      for (var base = 0; base < ${len}; base += ${WG}) {
        let n = min(${WG}, ${len} - base);
        if (tid < n) {
          let kt = base + tid;
          ${each((r) => `let mk${r} = select(negMax, mask[mrow${r} + ${maskOff} + kt], ${r} < nRows);`)}
          ${each((r) => `var dot${r} = 0.0;`)}
          if (${each((r) => `mk${r} > negMax`, " || ")}) {
            let ko = ${kb4} + kt * ${D4};
            for (var d = 0; d < ${D4}; d++) {
              let kd = ${kBuf}[ko + d];
              ${each((r) => `dot${r} = dot${r} + dot(qs[${r * D4} + d], kd);`)}
            }
          }
          ${each((r) => `sc[${r * WG} + tid] = select(mk${r}, dot${r} * uniforms.scale + mk${r}, mk${r} > negMax);`)}
        }
        workgroupBarrier();
        if (tid < ${R * LN}) {
          let o = (tid / ${LN}) * ${WG};
          let t0 = (tid % ${LN}) * ${KPL};
          var pm = negMax;
          for (var t = t0; t < min(t0 + ${KPL}, n); t++) { pm = max(pm, sc[o + t]); }
          red[tid] = pm;
        }
        workgroupBarrier();
        if (tid < ${R}) {
          var tmax = negMax;
          for (var l = 0; l < ${LN}; l++) { tmax = max(tmax, red[tid * ${LN} + l]); }
          let mOld = rowM[tid];
          let mNew = max(mOld, tmax);
          let alpha = exp(mOld - mNew);
          rowM[tid] = mNew;
          rowAlpha[tid] = alpha;
          // the tile adds nothing (every p exactly 0) when its keys are all masked in a row that saw an unmasked key
          rowLive[tid] = select(0, 1, alpha != 1.0 || tmax > negMax || mNew == negMax);
        }
        workgroupBarrier();
        if (tid < ${R * LN}) {
          let r = tid / ${LN};
          let o = r * ${WG};
          let mNew = rowM[r];
          let t0 = (tid % ${LN}) * ${KPL};
          var ps = 0.0;
          for (var t = t0; t < min(t0 + ${KPL}, n); t++) {
            let p = exp(sc[o + t] - mNew);
            sc[o + t] = p;
            ps = ps + p;
          }
          red[tid] = ps;
        }
        workgroupBarrier();
        if (tid < ${R}) {
          var sum = 0.0;
          for (var l = 0; l < ${LN}; l++) { sum = sum + red[tid * ${LN} + l]; }
          rowL[tid] = rowL[tid] * rowAlpha[tid] + sum;
        }
        if (${each((r) => `rowLive[${r}] != 0`, " || ")}) {
          ${each((r) => `let al${r} = rowAlpha[${r}];`)}
          ${slots(
            (i, d4) => `if (${NG > 1 ? `g < ${NG}` : `${d4} < ${D4}`}) {
            ${each((r) => `acc${r}_${i} = acc${r}_${i} * al${r};`)}
            for (var t = g; t < n; t += ${NG}) {
              let vv = ${vBuf}[${kb4} + (base + t) * ${D4} + ${d4}];
              ${each((r) => `acc${r}_${i} = acc${r}_${i} + sc[${r * WG} + t] * vv;`)}
            }
          }`,
          )}
        }
        workgroupBarrier();
      }`;
  return {
    variableNames: ["queries", "keys", "values", "mask", ...(prefix ? ["prefixKeys", "prefixValues", "rowPrompt"] : [])],
    variableComponents: [4, 4, 4, 1, ...(prefix ? [4, 4, 1] : [])],
    outputShape: [B, S, nh * D],
    dispatchLayout: flatLayout(3),
    dispatch: [Math.ceil(GS / R), B * kvh, 1],
    workgroupSize: [WG, 1, 1],
    shaderKey: `rarl_attention_${D}_${R}${prefix ? "_prefix" : ""}`,
    uniforms: "scale : f32,",
    getUserCode: () => `
    var<workgroup> qs : array<vec4<f32>, ${R * D4}>;
    var<workgroup> sc : array<f32, ${R * WG}>;
    var<workgroup> rowM : array<f32, ${R}>;
    var<workgroup> rowL : array<f32, ${R}>;
    var<workgroup> rowAlpha : array<f32, ${R}>;
    var<workgroup> rowLive : array<i32, ${R}>;
    var<workgroup> red : array<f32, ${R * LN}>;
    ${NG > 1 ? `var<workgroup> part : array<vec4<f32>, ${R * D4}>;` : ""}
    ${MAIN} {
      let negMax = ${NEG_FLT_MAX};
      let tid = i32(localId.x);
      let nh = uniforms.queriesShape[1];
      let S = uniforms.queriesShape[2];
      let kvh = uniforms.keysShape[1];
      let Ts = uniforms.keysShape[2];
      let T = uniforms.maskShape[3];
      let G = nh / kvh;
      let GS = G * S;
      let bh = i32(workgroupId.y);
      let b = bh / kvh;
      let h = bh % kvh;
      let r0 = i32(workgroupId.x) * ${R};
      let nRows = min(${R}, GS - r0);
      for (var i = tid; i < ${R * D4}; i += ${WG}) {
        var x = vec4<f32>(0.0);
        if (i / ${D4} < nRows) { x = queries[(bh * GS + r0) * ${D4} + i]; }
        qs[i] = x;
      }
      ${each((r) => `let mrow${r} = (b * S + (r0 + ${r}) % S) * T;`)}
      if (tid < ${R}) {
        rowM[tid] = negMax;
        rowL[tid] = 0.0;
      }
      ${each((r) => range(SL).map((i) => `var acc${r}_${i} = vec4<f32>(0.0);`).join(" "))}
      let g = ${NG > 1 ? `tid / ${D4}` : "0"};
      ${NG > 1 ? `let d4 = tid % ${D4};` : ""}
      workgroupBarrier();
      ${
        prefix
          ? `let Tp = uniforms.prefixKeysShape[2];
      let pb4 = (rowPrompt[b] * kvh + h) * Tp * ${D4};
      ${segment("prefixKeys", "prefixValues", "Tp", "pb4", "0")}
      let kb4 = bh * Ts * ${D4};
      ${segment("keys", "values", "Ts", "kb4", "Tp")}`
          : `let kb4 = bh * Ts * ${D4};
      ${segment("keys", "values", "Ts", "kb4", "0")}`
      }
      ${
        NG > 1
          ? `for (var gg = 1; gg < ${NG}; gg++) {
        if (g == gg) { ${each((r) => `part[${r * D4} + d4] = acc${r}_0;`, " ")} }
        workgroupBarrier();
        if (g == 0) { ${each((r) => `acc${r}_0 = acc${r}_0 + part[${r * D4} + d4];`, " ")} }
        workgroupBarrier();
      }`
          : ""
      }
      if (g == 0) {
        ${slots(
          (i, d4) => `if (${d4} < ${D4}) {
          ${each(
            (r) => `if (${r} < nRows) {
            let row = r0 + ${r};
            let o = ((b * S + row % S) * nh + h * G + row / S) * ${D} + ${d4} * 4;
            let y = acc${r}_${i} / rowL[${r}];
            result[o] = y.x;
            result[o + 1] = y.y;
            result[o + 2] = y.z;
            result[o + 3] = y.w;
          }`,
          )}
        }`,
        )}
      }
    }`,
  };
}

/** Registers the fused attention kernel for the webgpu backend (called when the webgpu backend is prepared). */
export function registerWebgpuAttention(): void {
  registerWebgpuKernel(ATTENTION_KERNEL, ({ inputs, backend, attrs }) => {
    const b = backend as WebgpuBackendLike;
    const ins = inputs as Record<string, tf.TensorInfo>;
    const { queries, keys, values, mask } = ins;
    const prefix = ins.prefixKeys !== undefined;
    const [B, nh, S, D] = queries.shape;
    const kvh = keys.shape[1];
    const program = attentionProgram(B, nh, kvh, S, D, prefix);
    const list = prefix ? [queries, keys, values, mask, ins.prefixKeys, ins.prefixValues, ins.rowPrompt] : [queries, keys, values, mask];
    return b.runWebGPUProgram(program, list, "float32", [{ type: "float32", data: [(attrs as { scale: number }).scale] }]);
  });
}

/**
 * The tfjs composite (what @rarl/model computed before the fused kernel; cpu/wasm still run exactly this).
 * q [B, heads, S, D], k/v [B, kvHeads, T, D], mask [B, 1, S, T] additive; returns [B, S, heads·D]. With a prefix,
 * each row's prompt keys/values are gathered and put before its own.
 */
export function attentionComposite(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D, prefix?: AttentionPrefix): tf.Tensor3D {
  const [B, nh, kvh, S, D] = dims(q, k, v, mask, prefix);
  return tf.tidy(() => {
    const kf = prefix ? tf.concat([tf.gather(prefix.k, prefix.rowPrompt), k], 2) : k;
    const vf = prefix ? tf.concat([tf.gather(prefix.v, prefix.rowPrompt), v], 2) : v;
    const G = nh / kvh;
    const T = kf.shape[2];
    // grouped-query attention: query head j uses kv head floor(j / G) (repeat_kv), so fold the G query heads
    // of each kv head into the row axis: [B, kvh, G·S, D] x [B, kvh, D, T].
    const qg = tf.reshape(q, [B, kvh, G * S, D]);
    const kT = tf.transpose(kf, [0, 1, 3, 2]);
    let scores = tf.mul(bmm(qg, kT), 1 / Math.sqrt(D));
    scores = tf.add(tf.reshape(scores, [B, kvh, G, S, T]), tf.reshape(mask, [B, 1, 1, S, T]));
    const p = tf.reshape(tf.softmax(scores), [B, kvh, G * S, T]);
    const att = tf.reshape(bmm(p, vf), [B, nh, S, D]);
    return tf.reshape(tf.transpose(att, [0, 2, 1, 3]), [B, S, nh * D]) as tf.Tensor3D;
  });
}

/** Whether {@link fusedAttention} runs the fused kernel now (the webgpu backend is active with it registered). */
export function fusedAttentionAvailable(): boolean {
  return tf.getBackend() === "webgpu" && tf.getKernel(ATTENTION_KERNEL, "webgpu") !== undefined;
}

function fusedApplies(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor, prefix: AttentionPrefix | undefined, d: number[]): boolean {
  const [B, nh, kvh, S, D, Tp, Ts] = d;
  const tensors = [q, k, v, mask, ...(prefix ? [prefix.k, prefix.v] : [])];
  return (
    fusedAttentionAvailable() &&
    tensors.every((t) => t.dtype === "float32" && t.size > 0) &&
    (!prefix || Tp > 0) &&
    Ts > 0 &&
    D % 4 === 0 &&
    D <= MAX_ROW_FLOATS &&
    B * kvh <= MAX_DISPATCH &&
    Math.ceil(((nh / kvh) * S) / rowsPerGroup((nh / kvh) * S, D)) <= MAX_DISPATCH
  );
}

/**
 * Analytic backward of the composite over the full keys kf/vf [B, kvh, T, D] (probabilities recomputed):
 * returns [dq [B, nh, S, D], dk, dv [B, kvh, T, D]].
 */
function attentionBackward(dy: tf.Tensor, q: tf.Tensor, kf: tf.Tensor, vf: tf.Tensor, mask: tf.Tensor): tf.Tensor[] {
  const [B, nh, S, D] = q.shape;
  const [, kvh, T] = kf.shape;
  const G = nh / kvh;
  const scale = 1 / Math.sqrt(D);
  const qg = tf.reshape(q, [B, kvh, G * S, D]);
  const scores = tf.add(tf.reshape(tf.mul(tf.matMul(qg, kf, false, true), scale), [B, kvh, G, S, T]), tf.reshape(mask, [B, 1, 1, S, T]));
  const p = tf.reshape(tf.softmax(scores), [B, kvh, G * S, T]);
  const dO = tf.reshape(tf.transpose(tf.reshape(dy, [B, S, nh, D]), [0, 2, 1, 3]), [B, kvh, G * S, D]);
  // o = p·v:  dv = pᵀ·dO (summed over the G heads of a kv head),  dp = dO·vᵀ;  softmax: ds = p ⊙ (dp − Σ dp ⊙ p);
  // scores = q·kᵀ·scale + mask:  dq = ds·k·scale,  dk = dsᵀ·q·scale.
  const dv = tf.matMul(p, dO, true, false);
  const dp = tf.matMul(dO, vf, false, true);
  const ds = tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)));
  const dq = tf.reshape(tf.mul(tf.matMul(ds, kf), scale), [B, nh, S, D]);
  const dk = tf.mul(tf.matMul(ds, qg, true, false), scale);
  return [dq, dk, dv];
}

/**
 * Grouped-query attention softmax(q·kᵀ/√D + mask)·v with the heads merged: q [B, heads, S, D] (after RoPE),
 * k/v [B, kvHeads, Ts, D] (heads a multiple of kvHeads; query head j reads kv head floor(j / G), G = heads /
 * kvHeads), mask [B, 1, S, T] additive (0 or finfo.min), T = Tp + Ts; returns [B, S, heads·D].
 * With `prefix`, row b attends to prompt prefix.rowPrompt[b]'s Tp keys (prefix.k/v [P, kvHeads, Tp, D]) before its
 * own Ts, as if they were concatenated. One fused kernel on webgpu (float32), the tfjs composite elsewhere.
 * Differentiable w.r.t. q, k, v (and prefix.k/v) on every backend; the mask gets no gradient.
 * @throws AttentionShapeError naming the argument whose shape or dtype does not fit.
 */
export function fusedAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D, prefix?: AttentionPrefix): tf.Tensor3D {
  const d = dims(q, k, v, mask, prefix);
  if (!fusedApplies(q, k, v, mask, prefix, d)) return attentionComposite(q, k, v, mask, prefix);
  const scale = 1 / Math.sqrt(d[4]);
  const attrs = { scale } as unknown as tf.NamedAttrMap;
  if (!prefix) {
    const f = tf.customGrad(((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor, save: tf.GradSaveFunc) => {
      save([qi, ki, vi, mask]);
      const value = tf.engine().runKernel(ATTENTION_KERNEL, { queries: qi, keys: ki, values: vi, mask }, attrs) as tf.Tensor;
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [qs, ks, vs, ms] = saved;
          return attentionBackward(dy, qs, ks, vs, ms);
        },
      };
    }) as CustomGradientFunc);
    return f(q, k, v) as tf.Tensor3D;
  }
  const { rowPrompt } = prefix;
  const f = tf.customGrad(((qi: tf.Tensor, ki: tf.Tensor, vi: tf.Tensor, pki: tf.Tensor, pvi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([qi, ki, vi, pki, pvi, mask, rowPrompt]);
    const value = tf.engine().runKernel(
      ATTENTION_KERNEL,
      { queries: qi, keys: ki, values: vi, mask, prefixKeys: pki, prefixValues: pvi, rowPrompt },
      attrs,
    ) as tf.Tensor;
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qs, ks, vs, pks, pvs, ms, rp] = saved;
        const [B, kvh, Ts, D] = ks.shape as number[];
        const [P, , Tp] = pks.shape as number[];
        const kf = tf.concat([tf.gather(pks, rp), ks], 2);
        const vf = tf.concat([tf.gather(pvs, rp), vs], 2);
        const [dq, dkf, dvf] = attentionBackward(dy, qs, kf, vf, ms);
        // the prompt part of each row's key gradient goes back to its prompt (summed over the rows sharing it)
        const split = (g: tf.Tensor) => [
          tf.slice(g, [0, 0, Tp, 0], [B, kvh, Ts, D]),
          tf.unsortedSegmentSum(tf.slice(g, [0, 0, 0, 0], [B, kvh, Tp, D]), rp as tf.Tensor1D, P),
        ];
        const [dk, dpk] = split(dkf);
        const [dv, dpv] = split(dvf);
        return [dq, dk, dv, dpk, dpv];
      },
    };
  }) as CustomGradientFunc);
  return f(q, k, v, prefix.k, prefix.v) as tf.Tensor3D;
}
