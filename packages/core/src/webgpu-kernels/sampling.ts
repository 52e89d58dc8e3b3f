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
 * reductions; the top-k and top-p thresholds by an 8-bit radix select over an order-preserving integer key of the
 * scaled logits (4 histogram passes each, with integer workgroup atomics, only when that warper is on); then
 * per-invocation sums over contiguous id blocks, a scan over the 256 block sums and a sequential scan from the chosen
 * block.
 * Masses are exact 64-bit integer sums of round(exp(y - max) · 2^31) and the draw is a 32-bit fraction, so the
 * inverse CDF does not drift with the vocabulary size (a near-uniform row over 151936 ids gives each id 7e-6 of the
 * mass, below float32's accumulated rounding). Ids can still differ from the float64 host sampler where its CDF lies
 * within exp's float32 rounding of a boundary (the tests count those).
 */
import * as tf from "@tensorflow/tfjs-core";
import { flatLayout, MAIN, NEG_FLT_MAX, registerWebgpuKernel, type WebgpuBackendLike, type WgslProgram } from "./program";

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
  // Whether id c (logit/T in y, order key in key) survives the suppression mask, top-k, top-p (ties below tieLimit)
  // and min-p: the one condition the block masses and the inverse-CDF walk must share.
  const survives = `${allowed("c")} && key >= kk && (key > kp || (key == kp && c < tieLimit)) && (!useMinP || y - mp >= uniforms.logMinP)`;
  return {
    variableNames: masked ? ["logits", "u", "allowed"] : ["logits", "u"],
    outputShape: [rows, 2],
    dispatchLayout: flatLayout(2),
    dispatch: [rows, 1, 1],
    workgroupSize: [WG, 1, 1],
    shaderKey: `rarl_sample_rows_${masked ? "m" : "a"}`,
    uniforms: "greedy : i32, topK : i32, temperature : f32, topP : f32, topPFrac : u32, minP : f32, logMinP : f32,",
    getUserCode: () => `
    var<workgroup> fbuf : array<f32, ${WG}>;
    var<workgroup> ibuf : array<i32, ${WG}>;
    var<workgroup> chosen : i32;
    var<workgroup> fres : f32;
    var<workgroup> ires : i32;
    var<workgroup> lbuf : array<u32, ${WG}>;
    var<workgroup> hbuf : array<u32, ${WG}>;
    var<workgroup> res64 : vec2<u32>;
    var<workgroup> hcount : array<atomic<u32>, ${WG}>;
    var<workgroup> hlo : array<atomic<u32>, ${WG}>;
    var<workgroup> hhi : array<atomic<u32>, ${WG}>;
    var<workgroup> sel : vec4<u32>;
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
    // Probability masses are exact sums of fixed-point terms round(e · 2^31), e = exp(y - max) in [0, 1], held as
    // 64-bit integers (lo, hi): block sums, their scan and the draw's position agree exactly, with no float32
    // rounding growing with the vocabulary (a near-uniform row over 151936 ids gives each id 7e-6 of the mass).
    fn quant(e : f32) -> vec2<u32> { return vec2<u32>(u32(e * 2147483648.0 + 0.5), 0u); }
    fn add64(a : vec2<u32>, b : vec2<u32>) -> vec2<u32> {
      let lo = a.x + b.x;
      return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
    }
    fn sub64(a : vec2<u32>, b : vec2<u32>) -> vec2<u32> {
      return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
    }
    fn less64(a : vec2<u32>, b : vec2<u32>) -> bool { return a.y < b.y || (a.y == b.y && a.x < b.x); }
    fn shl16(v : u32) -> vec2<u32> { return vec2<u32>(v << 16u, v >> 16u); }
    // floor(f · t / 2^32) for a 32-bit fraction f and a 64-bit t (t < 2^50), by 16-bit limbs.
    fn mulFrac(f : u32, t : vec2<u32>) -> vec2<u32> {
      let f0 = f & 0xffffu;
      let f1 = f >> 16u;
      let t0 = t.x & 0xffffu;
      let t1 = t.x >> 16u;
      let t2 = t.y & 0xffffu;
      let t3 = t.y >> 16u;
      var low = vec2<u32>(f0 * t0, 0u);
      low = add64(low, shl16(f0 * t1));
      low = add64(low, shl16(f1 * t0));
      var r = vec2<u32>(low.y, 0u);
      r = add64(r, vec2<u32>(f0 * t2, 0u));
      r = add64(r, vec2<u32>(f1 * t1, 0u));
      r = add64(r, shl16(f1 * t2));
      r = add64(r, shl16(f0 * t3));
      return add64(r, vec2<u32>(0u, f1 * t3));
    }
    fn reduce64(tid : i32, v : vec2<u32>) -> vec2<u32> {
      lbuf[tid] = v.x;
      hbuf[tid] = v.y;
      workgroupBarrier();
      for (var s = blockSize / 2; s > 0; s = s / 2) {
        if (tid < s) {
          let a = add64(vec2<u32>(lbuf[tid], hbuf[tid]), vec2<u32>(lbuf[tid + s], hbuf[tid + s]));
          lbuf[tid] = a.x;
          hbuf[tid] = a.y;
        }
        workgroupBarrier();
      }
      if (tid == 0) { res64 = vec2<u32>(lbuf[0], hbuf[0]); }
      return workgroupUniformLoad(&res64);
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
        // Top-k: K = the k-th largest key of the allowed x/T (ties with it kept), by an 8-bit radix select from the
        // top byte: 4 histogram passes (integer workgroup atomics).
        var kk = 0u;
        if (uniforms.topK > 0) {
          var need = u32(uniforms.topK);
          for (var level = 3; level >= 0; level--) {
            let shift = u32(level) * 8u;
            var hiMask = 0u;
            if (level < 3) { hiMask = ~((1u << (shift + 8u)) - 1u); }
            atomicStore(&hcount[tid], 0u);
            workgroupBarrier();
            for (var c = tid; c < V; c += blockSize) {
              let key = orderKey(logits[base + c] / T);
              if (${allowed("c")} && (key & hiMask) == (kk & hiMask)) { atomicAdd(&hcount[(key >> shift) & 0xffu], 1u); }
            }
            workgroupBarrier();
            if (tid == 0) {
              var pick = kk;
              var left = need;
              if (need > 0u) {
                var cum = 0u;
                var found = false;
                for (var b = 255; b >= 0; b--) {
                  let h = atomicLoad(&hcount[b]);
                  if (cum + h >= need) {
                    pick = kk | (u32(b) << shift);
                    left = need - cum;
                    found = true;
                    break;
                  }
                  cum += h;
                }
                // Fewer than k allowed ids: top-k keeps them all (K = 0).
                if (!found) { pick = 0u; left = 0u; }
              }
              sel = vec4<u32>(pick, left, 0u, 0u);
            }
            let r = workgroupUniformLoad(&sel);
            kk = r.x;
            need = r.y;
          }
        }
        // Top-p over the top-k survivors: K = the largest key whose super-level set carries >= topP of their mass
        // (the same radix select over exact 64-bit masses); tokens above K are kept, ties at K in id order while the
        // mass before them is < topP.
        var kp = 0u;
        var tieLimit = V;
        if (uniforms.topP < 1.0) {
          var s1 = vec2<u32>(0u, 0u);
          for (var c = tid; c < V; c += blockSize) {
            let y = logits[base + c] / T;
            if (${allowed("c")} && orderKey(y) >= kk) { s1 = add64(s1, quant(exp(y - mp))); }
          }
          let goal = mulFrac(uniforms.topPFrac, reduce64(tid, s1));
          var above = vec2<u32>(0u, 0u);
          var nTies = 0;
          for (var level = 3; level >= 0; level--) {
            let shift = u32(level) * 8u;
            var hiMask = 0u;
            if (level < 3) { hiMask = ~((1u << (shift + 8u)) - 1u); }
            atomicStore(&hcount[tid], 0u);
            atomicStore(&hlo[tid], 0u);
            atomicStore(&hhi[tid], 0u);
            workgroupBarrier();
            for (var c = tid; c < V; c += blockSize) {
              let y = logits[base + c] / T;
              let key = orderKey(y);
              if (${allowed("c")} && key >= kk && (key & hiMask) == (kp & hiMask)) {
                let b = (key >> shift) & 0xffu;
                let e = quant(exp(y - mp)).x;
                atomicAdd(&hcount[b], 1u);
                let old = atomicAdd(&hlo[b], e);
                if (old + e < old) { atomicAdd(&hhi[b], 1u); }
              }
            }
            workgroupBarrier();
            if (tid == 0) {
              var acc = above;
              var pick = kp;
              var cnt = 0u;
              for (var b = 255; b >= 0; b--) {
                let m = vec2<u32>(atomicLoad(&hlo[b]), atomicLoad(&hhi[b]));
                if (!less64(add64(acc, m), goal)) {
                  pick = kp | (u32(b) << shift);
                  cnt = atomicLoad(&hcount[b]);
                  break;
                }
                acc = add64(acc, m);
              }
              sel = vec4<u32>(pick, acc.x, acc.y, cnt);
            }
            let r = workgroupUniformLoad(&sel);
            kp = r.x;
            above = vec2<u32>(r.y, r.z);
            nTies = i32(r.w);
          }
          // Every tie at K has the same value, so the same fixed-point mass q.
          let kb = select(~kp, kp ^ 0x80000000u, (kp & 0x80000000u) != 0u);
          let q1 = quant(exp(bitcast<f32>(kb) - mp));
          var massBefore = above;
          var keepTies = 1;
          for (var i = 1; i < nTies; i++) {
            massBefore = add64(massBefore, q1);
            if (less64(massBefore, goal)) { keepTies = i + 1; } else { break; }
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
        var blockMass = vec2<u32>(0u, 0u);
        var lastKept = -1;
        for (var c = start; c < end; c++) {
          let y = logits[base + c] / T;
          let key = orderKey(y);
          if (${survives}) {
            blockMass = add64(blockMass, quant(exp(y - mp)));
            lastKept = c;
          }
        }
        lbuf[tid] = blockMass.x;
        hbuf[tid] = blockMass.y;
        ibuf[tid] = lastKept;
        workgroupBarrier();
        if (tid == 0) {
          var total = vec2<u32>(0u, 0u);
          var last = -1;
          for (var b = 0; b < blockSize; b++) {
            total = add64(total, vec2<u32>(lbuf[b], hbuf[b]));
            last = max(last, ibuf[b]);
          }
          // The draw's position u · total (u as a 32-bit fraction), then the block and the id holding it.
          var r = mulFrac(bitcast<u32>(u[row]), total);
          var b0 = blockSize;
          for (var b = 0; b < blockSize; b++) {
            let m = vec2<u32>(lbuf[b], hbuf[b]);
            if (less64(r, m)) { b0 = b; break; }
            r = sub64(r, m);
          }
          var pick = last;
          for (var c = min(V, b0 * per); c < V; c++) {
            let y = logits[base + c] / T;
            let key = orderKey(y);
            if (${survives}) {
              let e = quant(exp(y - mp));
              if (less64(r, e)) { pick = c; break; }
              r = sub64(r, e);
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
  registerWebgpuKernel(SAMPLE_ROWS_KERNEL, ({ inputs, backend, attrs }) => {
    const b = backend as WebgpuBackendLike;
    const { logits, u, allowed } = inputs as { logits: tf.TensorInfo; u: tf.TensorInfo; allowed?: tf.TensorInfo };
    const a = attrs as unknown as Required<DeviceSamplingParams>;
    const ins = allowed ? [logits, u, allowed] : [logits, u];
    return b.runWebGPUProgram(sampleRowsProgram(logits.shape[0], !!allowed), ins, "float32", [
      { type: "int32", data: [a.greedy ? 1 : 0] },
      { type: "int32", data: [a.topK] },
      { type: "float32", data: [a.temperature] },
      { type: "float32", data: [a.topP] },
      { type: "uint32", data: [fraction32(a.topP)] },
      { type: "float32", data: [a.minP] },
      { type: "float32", data: [a.minP > 0 ? Math.log(a.minP) : 0] },
    ]);
  });
}

/** Whether {@link sampleRowsOnDevice} can run now (the webgpu backend is active and the kernel registered). */
export function deviceSamplingAvailable(): boolean {
  return tf.getBackend() === "webgpu" && tf.getKernel(SAMPLE_ROWS_KERNEL, "webgpu") !== undefined;
}

/** floor(x · 2^32) for x in [0, 1), as the kernel's 32-bit fixed-point fraction (1 and above: 2^32 - 1). */
function fraction32(x: number): number {
  return Math.min(Math.max(Math.floor(x * 2 ** 32), 0), 2 ** 32 - 1);
}

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
  // Draws as 32-bit fractions (int32 bit patterns): float32 would keep only 24 of the draw's bits.
  const ut = tf.tensor1d(Int32Array.from(u, (x) => fraction32(x) | 0), "int32");
  try {
    const inputs: tf.NamedTensorMap = allowed ? { logits, u: ut, allowed } : { logits, u: ut };
    return tf.engine().runKernel(SAMPLE_ROWS_KERNEL, inputs, p as unknown as tf.NamedAttrMap) as tf.Tensor2D;
  } finally {
    ut.dispose();
  }
}
