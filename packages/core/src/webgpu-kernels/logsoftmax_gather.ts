/**
 * Fused log-softmax statistics with the log-prob gather, over one vocabulary chunk of lm_head logits.
 *
 * For logits [N, Vc] (columns `start` .. `start + Vc` of the vocabulary) and target ids [N], one kernel returns per
 * row, in one pass over the chunk (online softmax: a running max that rescales the running sums):
 *   m = max_v x_v,  s = Σ_v e^(x_v − m),  t = x_id (0 when id is outside the chunk),  w = Σ_v e^(x_v − m) · x_v.
 * Chunks combine with {@link combineLogSoftmaxStats} (M = max m, S = Σ s·e^(m − M), W = Σ w·e^(m − M), T = Σ t):
 * log p(id) = T − (M + log S) and the entropy −Σ p log p = M + log S − W / S. So the chunked log-prob pass needs no
 * [N, V] softmax, exp or gather in generic kernels. One workgroup (256 invocations) per row, a tree reduction of the
 * (m, s, w) triples; no atomics.
 *
 * `logSoftmaxGatherStats` runs the kernel on webgpu and {@link logSoftmaxGatherComposite} (tfjs ops) elsewhere.
 */
import * as tf from "@tensorflow/tfjs-core";
import { flatLayout, MAIN, NEG_FLT_MAX, registerWebgpuKernel, type WebgpuBackendLike, type WgslProgram } from "./program";

/** Name of the kernel registered for the webgpu backend (inputs logits [N, Vc] float32, ids [N] int32; attr start). */
export const LOGSOFTMAX_GATHER_KERNEL = "RarlLogSoftmaxGather";

const WG = 256;

function program(rows: number): WgslProgram {
  return {
    variableNames: ["logits", "ids"],
    outputShape: [rows, 4],
    dispatchLayout: flatLayout(2),
    dispatch: [rows, 1, 1],
    workgroupSize: [WG, 1, 1],
    shaderKey: "rarl_logsoftmax_gather",
    uniforms: "start : i32,",
    getUserCode: () => `
    var<workgroup> mbuf : array<f32, ${WG}>;
    var<workgroup> sbuf : array<f32, ${WG}>;
    var<workgroup> wbuf : array<f32, ${WG}>;
    const blockSize = ${WG};
    ${MAIN} {
      let row = index / blockSize;
      let tid = i32(localId.x);
      let V = uniforms.logitsShape[1];
      let base = row * V;
      var m = ${NEG_FLT_MAX};
      var s = 0.0;
      var w = 0.0;
      for (var c = tid; c < V; c += blockSize) {
        let x = logits[base + c];
        if (s == 0.0) {
          m = x;
          s = 1.0;
          w = x;
        } else if (x > m) {
          let r = exp(m - x);
          s = s * r + 1.0;
          w = w * r + x;
          m = x;
        } else {
          let e = exp(x - m);
          s += e;
          w += e * x;
        }
      }
      mbuf[tid] = m;
      sbuf[tid] = s;
      wbuf[tid] = w;
      workgroupBarrier();
      for (var k = blockSize / 2; k > 0; k = k / 2) {
        if (tid < k) {
          let m2 = mbuf[tid + k];
          let s2 = sbuf[tid + k];
          if (s2 > 0.0) {
            let m1 = mbuf[tid];
            let s1 = sbuf[tid];
            if (s1 == 0.0) {
              mbuf[tid] = m2;
              sbuf[tid] = s2;
              wbuf[tid] = wbuf[tid + k];
            } else {
              let mm = max(m1, m2);
              let r1 = exp(m1 - mm);
              let r2 = exp(m2 - mm);
              mbuf[tid] = mm;
              sbuf[tid] = s1 * r1 + s2 * r2;
              wbuf[tid] = wbuf[tid] * r1 + wbuf[tid + k] * r2;
            }
          }
        }
        workgroupBarrier();
      }
      if (tid == 0) {
        let local = ids[row] - uniforms.start;
        var t = 0.0;
        if (local >= 0 && local < V) { t = logits[base + local]; }
        setOutputAtCoords(row, 0, mbuf[0]);
        setOutputAtCoords(row, 1, sbuf[0]);
        setOutputAtCoords(row, 2, t);
        setOutputAtCoords(row, 3, wbuf[0]);
      }
    }`,
  };
}

/** Registers the kernel for the webgpu backend (called when the webgpu backend is prepared). */
export function registerWebgpuLogSoftmaxGather(): void {
  registerWebgpuKernel(LOGSOFTMAX_GATHER_KERNEL, ({ inputs, backend, attrs }) => {
    const b = backend as WebgpuBackendLike;
    const { logits, ids } = inputs as { logits: tf.TensorInfo; ids: tf.TensorInfo };
    const start = (attrs as { start: number }).start;
    return b.runWebGPUProgram(program(logits.shape[0]), [logits, ids], "float32", [{ type: "int32", data: [start] }]);
  });
}

/** The same statistics with tfjs ops (two passes: max, then the sums); what other backends run. */
export function logSoftmaxGatherComposite(logits: tf.Tensor2D, ids: tf.Tensor1D, start = 0): tf.Tensor2D {
  return tf.tidy(() => {
    const [, Vc] = logits.shape;
    const m = tf.max(logits, 1, true);
    const e = tf.exp(tf.sub(logits, m));
    const s = tf.sum(e, 1, true);
    const w = tf.sum(tf.mul(e, logits), 1, true);
    const local = tf.sub(ids, tf.scalar(start, "int32"));
    const inside = tf.logicalAnd(tf.greaterEqual(local, 0), tf.less(local, Vc));
    const clamped = tf.minimum(tf.maximum(local, tf.scalar(0, "int32")), tf.scalar(Vc - 1, "int32"));
    const picked = tf.gather(logits, clamped, 1, 1) as tf.Tensor; // row r, column clamped[r]
    const t = tf.reshape(tf.mul(picked, tf.cast(inside, "float32")), [-1, 1]);
    return tf.concat([m, s, t, w], 1) as tf.Tensor2D;
  });
}

/** Whether the fused kernel runs for this call (webgpu with the kernel registered, float32 logits). */
/** Whether the fused kernel runs here (the webgpu backend, with @rarl/core's kernels registered). */
export function logSoftmaxGatherAvailable(): boolean {
  return tf.getBackend() === "webgpu" && tf.getKernel(LOGSOFTMAX_GATHER_KERNEL, "webgpu") !== undefined;
}

function fused(logits: tf.Tensor): boolean {
  return logits.dtype === "float32" && logSoftmaxGatherAvailable();
}

/**
 * Per-row [m, s, t, w] of one vocabulary chunk (see the file comment). No gradient: the caller's customGrad owns the
 * backward.
 * @param logits [N, Vc] float32, columns start .. start + Vc of the vocabulary.
 * @param ids [N] int32 target ids (vocabulary indices).
 * @returns [N, 4] float32.
 */
export function logSoftmaxGatherStats(logits: tf.Tensor2D, ids: tf.Tensor1D, start = 0): tf.Tensor2D {
  if (ids.dtype !== "int32" || ids.shape[0] !== logits.shape[0]) throw new Error(`logSoftmaxGatherStats: ids must be int32 [${logits.shape[0]}], got ${ids.dtype} [${ids.shape}]`);
  if (!fused(logits)) return logSoftmaxGatherComposite(logits, ids, start);
  return tf.engine().runKernel(LOGSOFTMAX_GATHER_KERNEL, { logits, ids }, { start } as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/**
 * Combines the [N, 4] statistics of a row's vocabulary chunks (online-softmax rescaling).
 * @returns `lse` [N] (log Σ_v e^x_v), `target` [N] (the target logit) and `meanLogit` [N] (Σ_v softmax_v · x_v).
 */
export function combineLogSoftmaxStats(parts: tf.Tensor2D[]): { lse: tf.Tensor1D; target: tf.Tensor1D; meanLogit: tf.Tensor1D } {
  return tf.tidy(() => {
    const col = (p: tf.Tensor2D, j: number) => tf.reshape(tf.slice(p, [0, j], [-1, 1]), [-1]) as tf.Tensor1D;
    const ms = parts.map((p) => col(p, 0));
    const M = ms.length === 1 ? ms[0] : ms.reduce((a, b) => tf.maximum(a, b));
    let S: tf.Tensor1D | null = null;
    let W: tf.Tensor1D | null = null;
    let T: tf.Tensor1D | null = null;
    parts.forEach((p, i) => {
      const r = tf.exp(tf.sub(ms[i], M));
      const s = tf.mul(col(p, 1), r) as tf.Tensor1D;
      const w = tf.mul(col(p, 3), r) as tf.Tensor1D;
      const t = col(p, 2);
      S = S ? (tf.add(S, s) as tf.Tensor1D) : s;
      W = W ? (tf.add(W, w) as tf.Tensor1D) : w;
      T = T ? (tf.add(T, t) as tf.Tensor1D) : t;
    });
    const s = S as unknown as tf.Tensor1D;
    const lse = tf.add(M, tf.log(s)) as tf.Tensor1D;
    const meanLogit = tf.div(W as unknown as tf.Tensor1D, s) as tf.Tensor1D;
    return { lse, target: T as unknown as tf.Tensor1D, meanLogit };
  });
}
