/**
 * Next-token selection on the GPU: from last-position logits [B, V] and one uniform draw u per row, each row's chosen
 * id and its log-prob under the RAW logits, in one kernel, so a decode step reads back 2·B floats instead of B·V.
 *
 * Semantics are those of @rarl/model's host sampler (generation/sampling.ts, `sampleRow`), which follows Hugging Face
 * transformers' generate(): suppressed ids are never chosen; greedy takes the first maximum; sampling divides the
 * logits by the temperature, keeps the top-k (ties with the k-th kept), then the smallest most-likely set whose mass
 * reaches top-p (ties in id order), then drops tokens below min-p × the top probability, and picks by inverse CDF in
 * id order with the draw u scaled by the survivors' total mass (a draw that float rounding leaves past the mass takes
 * the last survivor). The returned log-prob is log_softmax(raw logits)[id], before suppression and warpers.
 * The repetition penalty is not done here (it needs each row's seen ids): callers keep the host path for it.
 *
 * One workgroup (256 invocations) per row, no float atomics, no sort: max / arg-max and the raw log-sum-exp by tree
 * reductions; the top-k and top-p thresholds by bisection over the 32 bits of an order-preserving integer key of the
 * scaled logits (32 counting or mass passes each, only when that warper is on); then per-invocation sums over
 * contiguous id blocks, a scan over the 256 block sums and a sequential scan from the chosen block.
 * Sums are float32 (the host's are float64): ids can differ only where the host's CDF lies within float32 rounding of
 * a boundary (the test counts those).
 */
import * as tf from "@tensorflow/tfjs-core";
import { flatLayout, MAIN, NEG_FLT_MAX, type WebgpuBackendLike, type WgslProgram } from "./program";

/** Name of the kernel registered for the webgpu backend (inputs logits [B, V], u [B], optional allowed [V]). */
export const SAMPLE_ROWS_KERNEL = "RarlSampleRows";

const WG = 256;

/** Selection parameters (see @rarl/model's SamplingParams; the repetition penalty is not supported). */
export interface DeviceSamplingParams {
  /** Greedy (first arg-max of the non-suppressed logits; u is ignored) or sampling. */
  greedy: boolean;
  /** > 0. Default 1. */
  temperature?: number;
  /** 0 = off. Default 0. */
  topK?: number;
  /** In (0, 1]; 1 = off. Default 1. */
  topP?: number;
  /** In [0, 1]; 0 = off. Default 0. */
  minP?: number;
}

function sampleRowsProgram(rows: number, masked: boolean): WgslProgram {
  const allowed = (id: string) => (masked ? `(allowed[${id}] > 0.5)` : "true");
  return {
    variableNames: masked ? ["logits", "u", "allowed"] : ["logits", "u"],
    outputShape: [rows, 2],
    dispatchLayout: flatLayout(2),
    dispatch: [rows, 1, 1],
    workgroupSize: [WG, 1, 1],
    shaderKey: `rarl_sample_rows_${masked ? "m" : "a"}`,
    uniforms: "greedy : i32, topK : i32, temperature : f32, topP : f32, minP : f32, logMinP : f32,",
    getUserCode: () => `
    var<workgroup> fbuf : array<f32, ${WG}>;
    var<workgroup> ibuf : array<i32, ${WG}>;
    var<workgroup> chosen : i32;
    var<workgroup> fres : f32;
    var<workgroup> ires : i32;
    const blockSize = ${WG};

    // Order-preserving map of a float to u32 (a < b  <=>  key(a) < key(b) for non-NaN values).
    fn orderKey(v : f32) -> u32 {
      let b = bitcast<u32>(v);
      if ((b & 0x80000000u) != 0u) { return ~b; }
      return b | 0x80000000u;
    }
    fn reduceSum(tid : i32, v : f32) -> f32 {
      fbuf[tid] = v;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { fbuf[tid] = fbuf[tid] + fbuf[tid + s]; }
        workgroupBarrier();
      }
      if (tid == 0) { fres = fbuf[0]; }
      return workgroupUniformLoad(&fres);
    }
    fn reduceMax(tid : i32, v : f32) -> f32 {
      fbuf[tid] = v;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { fbuf[tid] = max(fbuf[tid], fbuf[tid + s]); }
        workgroupBarrier();
      }
      if (tid == 0) { fres = fbuf[0]; }
      return workgroupUniformLoad(&fres);
    }
    fn reduceCount(tid : i32, v : i32) -> i32 {
      ibuf[tid] = v;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) { ibuf[tid] = ibuf[tid] + ibuf[tid + s]; }
        workgroupBarrier();
      }
      if (tid == 0) { ires = ibuf[0]; }
      return workgroupUniformLoad(&ires);
    }
    // First arg-max: the larger value, the smaller id on ties. Returns the id (-1: nothing allowed).
    fn reduceArgMax(tid : i32, v : f32, id : i32) -> i32 {
      fbuf[tid] = v;
      ibuf[tid] = id;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) {
          let ov = fbuf[tid + s];
          let oi = ibuf[tid + s];
          if (oi >= 0 && (ibuf[tid] < 0 || ov > fbuf[tid] || (ov == fbuf[tid] && oi < ibuf[tid]))) {
            fbuf[tid] = ov;
            ibuf[tid] = oi;
          }
        }
        workgroupBarrier();
      }
      if (tid == 0) { ires = ibuf[0]; }
      return workgroupUniformLoad(&ires);
    }

    ${MAIN} {
      let row = index / blockSize;
      let tid = i32(localId.x);
      let V = uniforms.logitsShape[1];
      let base = row * V;

      // Raw max and the first arg-max of the allowed logits.
      var rawMax = ${NEG_FLT_MAX};
      var selVal = ${NEG_FLT_MAX};
      var selId = -1;
      for (var c = tid; c < V; c += blockSize) {
        let x = logits[base + c];
        rawMax = max(rawMax, x);
        if (${allowed("c")} && (selId < 0 || x > selVal)) { selVal = x; selId = c; }
      }
      rawMax = reduceMax(tid, rawMax);
      let am = reduceArgMax(tid, selVal, selId);
      var acc = 0.0;
      for (var c = tid; c < V; c += blockSize) { acc += exp(logits[base + c] - rawMax); }
      let lse = rawMax + log(reduceSum(tid, acc));

      var token = am;
      if (uniforms.greedy == 0) {
        let T = uniforms.temperature;
        let mp = logits[base + max(am, 0)] / T;
        // Top-k: the largest key K with #{allowed: key(x/T) >= K} >= k, built bit by bit (K = the k-th largest).
        var kk = 0u;
        if (uniforms.topK > 0) {
          for (var bit = 31; bit >= 0; bit--) {
            let cand = kk | (1u << u32(bit));
            var n = 0;
            for (var c = tid; c < V; c += blockSize) {
              if (${allowed("c")} && orderKey(logits[base + c] / T) >= cand) { n++; }
            }
            if (reduceCount(tid, n) >= uniforms.topK) { kk = cand; }
          }
        }
        // Top-p over the top-k survivors: the largest key K whose super-level set carries >= topP of their mass;
        // tokens above K are kept, ties at K in id order while the mass before them is < topP.
        var kp = 0u;
        var tieLimit = V;
        if (uniforms.topP < 1.0) {
          var s1 = 0.0;
          for (var c = tid; c < V; c += blockSize) {
            let y = logits[base + c] / T;
            if (${allowed("c")} && orderKey(y) >= kk) { s1 += exp(y - mp); }
          }
          let goal = uniforms.topP * reduceSum(tid, s1);
          for (var bit = 31; bit >= 0; bit--) {
            let cand = kp | (1u << u32(bit));
            var m = 0.0;
            for (var c = tid; c < V; c += blockSize) {
              let y = logits[base + c] / T;
              let key = orderKey(y);
              if (${allowed("c")} && key >= kk && key >= cand) { m += exp(y - mp); }
            }
            if (reduceSum(tid, m) >= goal) { kp = cand; }
          }
          var above = 0.0;
          var ties = 0;
          var q = 0.0;
          for (var c = tid; c < V; c += blockSize) {
            let y = logits[base + c] / T;
            let key = orderKey(y);
            if (${allowed("c")} && key >= kk) {
              if (key > kp) { above += exp(y - mp); }
              if (key == kp) { ties++; q = exp(y - mp); }
            }
          }
          let massAbove = reduceSum(tid, above);
          let nTies = reduceCount(tid, ties);
          let qq = reduceMax(tid, q);
          var keepTies = 1;
          for (var i = 1; i < nTies; i++) {
            if (massAbove + f32(i) * qq < goal) { keepTies = i + 1; } else { break; }
          }
          // Rare: equal logits straddle the top-p boundary; the id after the last kept tie, by one scan. (The
          // barriers stay in uniform control flow.)
          if (tid == 0) {
            chosen = V;
            if (keepTies < nTies) {
              var seen = 0;
              for (var c = 0; c < V; c++) {
                let key = orderKey(logits[base + c] / T);
                if (${allowed("c")} && key == kp && key >= kk) {
                  if (seen == keepTies) { chosen = c; break; }
                  seen++;
                }
              }
            }
          }
          tieLimit = workgroupUniformLoad(&chosen);
        }
        // Min-p, then the inverse CDF over the survivors in id order.
        let useMinP = uniforms.minP > 0.0;
        let per = (V + blockSize - 1) / blockSize;
        let start = min(V, tid * per);
        let end = min(V, start + per);
        var blockMass = 0.0;
        var lastKept = -1;
        for (var c = start; c < end; c++) {
          let y = logits[base + c] / T;
          let key = orderKey(y);
          if (${allowed("c")} && key >= kk && (key > kp || (key == kp && c < tieLimit)) && (!useMinP || y - mp >= uniforms.logMinP)) {
            blockMass += exp(y - mp);
            lastKept = c;
          }
        }
        fbuf[tid] = blockMass;
        ibuf[tid] = lastKept;
        workgroupBarrier();
        if (tid == 0) {
          var total = 0.0;
          var last = -1;
          for (var b = 0; b < blockSize; b++) {
            total += fbuf[b];
            last = max(last, ibuf[b]);
          }
          var r = u[row] * total;
          var b0 = 0;
          for (var b = 0; b < blockSize; b++) {
            if (r < fbuf[b]) { b0 = b; break; }
            r -= fbuf[b];
            b0 = b + 1;
          }
          var pick = last;
          for (var c = min(V, b0 * per); c < V; c++) {
            let y = logits[base + c] / T;
            let key = orderKey(y);
            if (${allowed("c")} && key >= kk && (key > kp || (key == kp && c < tieLimit)) && (!useMinP || y - mp >= uniforms.logMinP)) {
              r -= exp(y - mp);
              if (r < 0.0) { pick = c; break; }
            }
          }
          chosen = pick;
        }
        token = workgroupUniformLoad(&chosen);
      }
      if (tid == 0) {
        let t = max(token, 0);
        setOutputAtCoords(row, 0, f32(token));
        setOutputAtCoords(row, 1, logits[base + t] - lse);
      }
    }`,
  };
}

/** Registers the sampling kernel for the webgpu backend (called when the webgpu backend is prepared). */
export function registerWebgpuSampling(): void {
  if (!tf.getKernel("Reshape", "webgpu")) return;
  if (tf.getKernel(SAMPLE_ROWS_KERNEL, "webgpu")) tf.unregisterKernel(SAMPLE_ROWS_KERNEL, "webgpu");
  tf.registerKernel({
    kernelName: SAMPLE_ROWS_KERNEL,
    backendName: "webgpu",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as WebgpuBackendLike;
      const { logits, u, allowed } = inputs as { logits: tf.TensorInfo; u: tf.TensorInfo; allowed?: tf.TensorInfo };
      const a = attrs as unknown as Required<DeviceSamplingParams>;
      const ins = allowed ? [logits, u, allowed] : [logits, u];
      return b.runWebGPUProgram(sampleRowsProgram(logits.shape[0], !!allowed), ins, "float32", [
        { type: "int32", data: [a.greedy ? 1 : 0] },
        { type: "int32", data: [a.topK] },
        { type: "float32", data: [a.temperature] },
        { type: "float32", data: [a.topP] },
        { type: "float32", data: [a.minP] },
        { type: "float32", data: [a.minP > 0 ? Math.log(a.minP) : 0] },
      ]);
    },
  });
}

/** Whether {@link sampleRowsOnDevice} can run now (the webgpu backend is active and the kernel registered). */
export function deviceSamplingAvailable(): boolean {
  return tf.getBackend() === "webgpu" && tf.getKernel(SAMPLE_ROWS_KERNEL, "webgpu") !== undefined;
}

/** The largest float32 below 1: a float64 draw in [0, 1) rounded to float32 can otherwise become 1. */
const BELOW_ONE = 1 - 2 ** -24;

/**
 * Chooses one token per row on the GPU (webgpu only; see {@link deviceSamplingAvailable}).
 * @param logits [B, V] float32 raw logits (B·V·4 bytes within one storage binding).
 * @param u B uniform draws in [0, 1) (ignored when greedy), e.g. one `rng.random()` per row.
 * @param allowed optional [V] float32 mask: 1 = may be chosen, 0 = suppressed.
 * @returns [B, 2] float32: column 0 the chosen id (exact as a float below 2^24), column 1 log_softmax(logits)[id].
 */
export function sampleRowsOnDevice(logits: tf.Tensor2D, u: ArrayLike<number>, params: DeviceSamplingParams, allowed?: tf.Tensor1D): tf.Tensor2D {
  if (!deviceSamplingAvailable()) throw new Error(`sampleRowsOnDevice: needs the webgpu backend with ${SAMPLE_ROWS_KERNEL} registered (backend is ${tf.getBackend()})`);
  const [B, V] = logits.shape;
  if (logits.dtype !== "float32") throw new Error(`sampleRowsOnDevice: logits must be float32, got ${logits.dtype}`);
  if (u.length !== B) throw new Error(`sampleRowsOnDevice: ${u.length} draws for ${B} rows`);
  if (V >= 2 ** 24) throw new Error(`sampleRowsOnDevice: vocabulary ${V} too large for float ids`);
  if (allowed && (allowed.shape[0] !== V || allowed.dtype !== "float32")) throw new Error(`sampleRowsOnDevice: allowed must be float32 [${V}], got ${allowed.dtype} [${allowed.shape}]`);
  const p = { greedy: params.greedy, temperature: params.temperature ?? 1, topK: params.topK ?? 0, topP: params.topP ?? 1, minP: params.minP ?? 0 };
  const ut = tf.tensor1d(Float32Array.from(u, (x) => Math.min(Math.max(x, 0), BELOW_ONE)));
  try {
    const inputs: tf.NamedTensorMap = allowed ? { logits, u: ut, allowed } : { logits, u: ut };
    return tf.engine().runKernel(SAMPLE_ROWS_KERNEL, inputs, p as unknown as tf.NamedAttrMap) as tf.Tensor2D;
  } finally {
    ut.dispose();
  }
}
