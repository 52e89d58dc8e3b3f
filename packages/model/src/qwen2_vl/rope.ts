import * as tf from "@tensorflow/tfjs-core";
import type { Qwen2VLConfig } from "./config";

const f32 = Math.fround;

/** Result of {@link getRopeIndex}. */
export interface RopeIndex {
  /** [3][B][S]: temporal, height and width position of every token (left padding gets 1, as in transformers). */
  positionIds: number[][][];
  /** [B]: max position + 1 - S per row; a token at cache position c gets position c + ropeDeltas[b] (all 3 rows). */
  ropeDeltas: number[];
}

/** The token ids and merge size getRopeIndex needs (a subset of Qwen2VLConfig). */
export type RopeIndexConfig = Pick<Qwen2VLConfig, "imageTokenId" | "videoTokenId" | "visionStartTokenId"> & {
  visionConfig: { spatialMergeSize: number };
};

/**
 * 3-D M-RoPE position ids, as transformers 4.47 `Qwen2VLForConditionalGeneration.get_rope_index` (images only;
 * videos are not supported by this package).
 * - Text tokens advance all three rows together; an image's `t·(h/m)·(w/m)` tokens get (t, row, col) offsets
 *   from the position after the preceding text; text resumes at max(previous positions) + 1.
 * - Only tokens with attentionMask = 1 are numbered; the others (left padding) get position 1.
 * - `imageGridThw` lists every image of the batch in order (rows consume them in turn). When it is null,
 *   positions are cumsum(mask) - 1 (padding 1) or 0..S-1 without a mask.
 * @param inputIds [B][S] token ids.
 * @param imageGridThw [numImages][3] (t, h, w) in patches, or null.
 * @param attentionMask [B][S] of 0/1, or null (all ones).
 */
export function getRopeIndex(
  inputIds: number[][],
  imageGridThw: number[][] | null,
  attentionMask: number[][] | null,
  config: RopeIndexConfig,
): RopeIndex {
  const B = inputIds.length;
  const S = B > 0 ? inputIds[0].length : 0;
  const pos: number[][][] = [0, 1, 2].map(() => inputIds.map(() => new Array<number>(S).fill(1)));
  const deltas: number[] = [];
  if (!imageGridThw) {
    for (let b = 0; b < B; b++) {
      let c = 0;
      let max = Number.NEGATIVE_INFINITY;
      for (let s = 0; s < S; s++) {
        let p: number;
        if (attentionMask) {
          c += attentionMask[b][s];
          p = attentionMask[b][s] === 0 ? 1 : c - 1;
        } else p = s;
        for (let r = 0; r < 3; r++) pos[r][b][s] = p;
        if (p > max) max = p;
      }
      deltas.push(attentionMask ? max + 1 - S : 0);
    }
    return { positionIds: pos, ropeDeltas: deltas };
  }
  const m = config.visionConfig.spatialMergeSize;
  let imageIndex = 0;
  for (let b = 0; b < B; b++) {
    const keep: number[] = [];
    for (let s = 0; s < S; s++) if (!attentionMask || attentionMask[b][s] === 1) keep.push(s);
    const tokens = keep.map((s) => inputIds[b][s]);
    let imageNums = 0;
    for (let i = 0; i + 1 < tokens.length; i++) {
      if (tokens[i] === config.visionStartTokenId && tokens[i + 1] === config.imageTokenId) imageNums++;
    }
    const rows: [number[], number[], number[]] = [[], [], []];
    let st = 0;
    let maxSoFar = -1;
    const pushText = (len: number, start: number) => {
      for (let i = 0; i < len; i++) for (let r = 0; r < 3; r++) rows[r].push(start + i);
      if (len > 0) maxSoFar = Math.max(maxSoFar, start + len - 1);
    };
    for (let n = 0; n < imageNums; n++) {
      const ed = tokens.indexOf(config.imageTokenId, st);
      if (ed < 0) break;
      const grid = imageGridThw[imageIndex];
      if (!grid) throw new RangeError(`getRopeIndex: row ${b} needs image ${imageIndex} but imageGridThw has ${imageGridThw.length}`);
      imageIndex++;
      const [t, h, w] = [grid[0], grid[1] / m, grid[2] / m];
      const textLen = ed - st;
      const stIdx = maxSoFar + 1;
      pushText(textLen, stIdx);
      const base = textLen + stIdx;
      for (let ti = 0; ti < t; ti++) {
        for (let hi = 0; hi < h; hi++) {
          for (let wi = 0; wi < w; wi++) {
            rows[0].push(base + ti);
            rows[1].push(base + hi);
            rows[2].push(base + wi);
            maxSoFar = Math.max(maxSoFar, base + ti, base + hi, base + wi);
          }
        }
      }
      st = ed + t * h * w;
    }
    if (st < tokens.length) pushText(tokens.length - st, maxSoFar + 1);
    for (let i = 0; i < keep.length; i++) for (let r = 0; r < 3; r++) pos[r][b][keep[i]] = rows[r][i];
    deltas.push(maxSoFar + 1 - S);
  }
  return { positionIds: pos, ropeDeltas: deltas };
}

/** Positions of `newTokens` tokens decoded after a cache of `cacheLength`: cacheLength + i + ropeDeltas[b], all rows. */
export function decodePositions(cacheLength: number, newTokens: number, ropeDeltas: number[]): number[][][] {
  const row = ropeDeltas.map((d) => Array.from({ length: newTokens }, (_, i) => cacheLength + i + d));
  return [row, row.map((r) => [...r]), row.map((r) => [...r])];
}

/** RoPE inverse frequencies 1 / base^(2i/dim), i < dim/2, rounded as torch computes them in float32. */
export function ropeInvFreq(dim: number, base: number): Float32Array {
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) out[i] = f32(1 / f32(base ** f32((2 * i) / dim)));
  return out;
}

/**
 * M-RoPE cos/sin tables [B, S, headDim] (Qwen2VLRotaryEmbedding + the mrope_section selection of
 * apply_multimodal_rotary_pos_emb): channel j uses frequency j mod headDim/2 and the position row (t, h or w)
 * of the section that (j mod headDim/2) falls in.
 * Returned as plain Float32Arrays (math apart from tensors); see {@link mropeCosSinTensors}.
 */
export function mropeCosSin(
  positionIds: number[][][],
  headDim: number,
  ropeTheta: number,
  mropeSection: [number, number, number],
): { cos: Float32Array; sin: Float32Array; shape: [number, number, number] } {
  const half = headDim / 2;
  const inv = ropeInvFreq(headDim, ropeTheta);
  const rowOf = new Int32Array(half);
  for (let i = 0; i < half; i++) rowOf[i] = i < mropeSection[0] ? 0 : i < mropeSection[0] + mropeSection[1] ? 1 : 2;
  const B = positionIds[0].length;
  const S = B > 0 ? positionIds[0][0].length : 0;
  const cos = new Float32Array(B * S * headDim);
  const sin = new Float32Array(B * S * headDim);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < S; s++) {
      const o = (b * S + s) * headDim;
      for (let i = 0; i < half; i++) {
        const a = f32(positionIds[rowOf[i]][b][s] * inv[i]);
        const c = Math.cos(a);
        const sn = Math.sin(a);
        cos[o + i] = c;
        cos[o + half + i] = c;
        sin[o + i] = sn;
        sin[o + half + i] = sn;
      }
    }
  }
  return { cos, sin, shape: [B, S, headDim] };
}

/**
 * M-RoPE tables as tensors shaped [B, 1, S, headDim] for q/k laid out [B, heads, S, headDim]. `sin` is returned
 * sign-folded (first half negated) so that rotate_half(x)·sin = swapHalves(x)·sinSigned.
 */
export function mropeCosSinTensors(
  positionIds: number[][][],
  headDim: number,
  ropeTheta: number,
  mropeSection: [number, number, number],
): { cos: tf.Tensor4D; sinSigned: tf.Tensor4D } {
  const { cos, sin, shape } = mropeCosSin(positionIds, headDim, ropeTheta, mropeSection);
  const half = headDim / 2;
  for (let o = 0; o < sin.length; o += headDim) for (let i = 0; i < half; i++) sin[o + i] = -sin[o + i];
  const s4: [number, number, number, number] = [shape[0], 1, shape[1], shape[2]];
  return { cos: tf.tensor4d(cos, s4), sinSigned: tf.tensor4d(sin, s4) };
}

/** [d, d] permutation P with (x·P)[j] = x[(j + d/2) mod d] (swaps the two halves; exact in float32). */
function halfSwap(d: number): tf.Tensor2D {
  const p = new Float32Array(d * d);
  for (let j = 0; j < d; j++) p[((j + d / 2) % d) * d + j] = 1;
  return tf.tensor2d(p, [d, d]);
}

/**
 * x·cos + rotate_half(x)·sin, with sinSigned from {@link mropeCosSinTensors} (any layout whose last axis is headDim).
 * The half swap is one small matmul with a permutation matrix (exact: one ±1 term per output), which on wasm is much
 * cheaper than split + concat.
 */
export function applyRotary(x: tf.Tensor, cos: tf.Tensor, sinSigned: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const d = x.shape[x.shape.length - 1];
    const swapped = tf.reshape(tf.matMul(tf.reshape(x, [-1, d]), halfSwap(d)), x.shape);
    return tf.add(tf.mul(x, cos), tf.mul(swapped, sinSigned));
  });
}

/**
 * Vision 2-D rotary angles [N, headDim/2] for the patches of `gridThw` in the processor's merge-window order
 * (Qwen2VisionTransformerPretrainedModel.rot_pos_emb, VisionRotaryEmbedding(headDim/2, theta)): each patch's row
 * index times the headDim/4 frequencies, then its column index times the same frequencies.
 */
export function visionRotPosEmb(gridThw: number[][], headDim: number, spatialMergeSize: number, theta = 10000): Float32Array {
  const dim = headDim / 2;
  const inv = ropeInvFreq(dim, theta);
  const q = inv.length;
  const m = spatialMergeSize;
  const total = gridThw.reduce((a, [t, h, w]) => a + t * h * w, 0);
  const out = new Float32Array(total * dim);
  let p = 0;
  for (const [t, h, w] of gridThw) {
    for (let ti = 0; ti < t; ti++) {
      for (let hb = 0; hb < h / m; hb++) {
        for (let wb = 0; wb < w / m; wb++) {
          for (let hi = 0; hi < m; hi++) {
            for (let wi = 0; wi < m; wi++) {
              const hp = hb * m + hi;
              const wp = wb * m + wi;
              for (let i = 0; i < q; i++) {
                out[p * dim + i] = f32(hp * inv[i]);
                out[p * dim + q + i] = f32(wp * inv[i]);
              }
              p++;
            }
          }
        }
      }
    }
  }
  return out;
}
