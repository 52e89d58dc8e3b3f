import * as tf from "@tensorflow/tfjs-core";
import type { Linear } from "../nn/linear";
import { activation, bmm, geluErf } from "../nn/ops";
import type { Qwen2VLVisionConfig } from "./config";
import { visionRotPosEmb } from "./rope";

/** Weights of one vision block (Qwen2VLVisionBlock). */
export interface VisionBlockWeights {
  norm1: { weight: tf.Tensor1D; bias: tf.Tensor1D };
  norm2: { weight: tf.Tensor1D; bias: tf.Tensor1D };
  /** attn.qkv [3E, E] + bias. */
  qkv: Linear;
  /** attn.proj [E, E] + bias. */
  proj: Linear;
  /** mlp.fc1 [E·mlpRatio, E] + bias. */
  fc1: Linear;
  /** mlp.fc2 [E, E·mlpRatio] + bias. */
  fc2: Linear;
}

/** Weights of the vision tower (hub names in comments). */
export interface VisionWeights {
  /** visual.patch_embed.proj.weight [E, C, T, P, P] reshaped to [E, C·T·P·P] (no bias). */
  patchEmbed: Linear;
  blocks: VisionBlockWeights[];
  /** visual.merger.ln_q (LayerNorm eps 1e-6). */
  lnQ: { weight: tf.Tensor1D; bias: tf.Tensor1D };
  /** visual.merger.mlp.0 [4E, 4E] + bias. */
  mlp0: Linear;
  /** visual.merger.mlp.2 [H, 4E] + bias. */
  mlp2: Linear;
}

/** Intermediates of a vision forward, named like the fixture's `image_prompt.vision.*` tensors. */
export interface VisionIntermediates {
  /** [N, E] after the patch embedding. */
  patch_embed: tf.Tensor2D;
  /** [N, headDim/2] 2-D rotary angles. */
  rot_pos_emb: tf.Tensor2D;
  /** `block<i>`: [N, E] output of each block; `merger`: [N/m², H]. */
  [name: string]: tf.Tensor2D;
}

/** Validates a grid list against the number of patch rows; returns per-image patch counts. */
export function checkGrid(gridThw: number[][], numPatches: number, merge: number): number[] {
  const sizes = gridThw.map((g, i) => {
    if (g.length !== 3 || !g.every((x) => Number.isInteger(x) && x > 0)) {
      throw new RangeError(`imageGridThw[${i}] must be three positive integers, got ${JSON.stringify(g)}`);
    }
    if (g[1] % merge !== 0 || g[2] % merge !== 0) throw new RangeError(`imageGridThw[${i}] = ${JSON.stringify(g)}: h and w must be multiples of ${merge}`);
    return g[0] * g[1] * g[2];
  });
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total !== numPatches) throw new RangeError(`pixelValues has ${numPatches} patch rows but imageGridThw ${JSON.stringify(gridThw)} describes ${total}`);
  return sizes;
}

/**
 * Qwen2VisionTransformerPretrainedModel (transformers 4.47): Conv3d patch embed (as a matmul over [N, C·T·P·P] rows),
 * 2-D rotary (theta 10000), `depth` pre-norm blocks (LayerNorm eps 1e-6 with bias, attention restricted to each
 * image's own patches = cu_seqlens, QuickGELU MLP), then PatchMerger (ln_q, 2x2 concat, Linear-GELU(erf)-Linear).
 */
export class Qwen2VisionTransformerPretrainedModel {
  constructor(
    readonly config: Qwen2VLVisionConfig,
    readonly weights: VisionWeights,
  ) {}

  get headDim(): number {
    return this.config.embedDim / this.config.numHeads;
  }

  /** Every Linear of the tower except the patch embed, with Hugging Face module paths (prefix "visual."). */
  namedLinears(prefix = "visual."): Map<string, Linear> {
    const m = new Map<string, Linear>();
    this.weights.blocks.forEach((b, i) => {
      m.set(`${prefix}blocks.${i}.attn.qkv`, b.qkv);
      m.set(`${prefix}blocks.${i}.attn.proj`, b.proj);
      m.set(`${prefix}blocks.${i}.mlp.fc1`, b.fc1);
      m.set(`${prefix}blocks.${i}.mlp.fc2`, b.fc2);
    });
    m.set(`${prefix}merger.mlp.0`, this.weights.mlp0);
    m.set(`${prefix}merger.mlp.2`, this.weights.mlp2);
    return m;
  }

  /**
   * pixelValues [N, C·T·P·P] (processor row order) + gridThw per image -> merged embeddings [N/m², H].
   * With `intermediates`, the named intermediate tensors are also returned (caller disposes them).
   */
  forward(pixelValues: tf.Tensor2D, gridThw: number[][], opts: { intermediates?: boolean } = {}): { embeds: tf.Tensor2D; intermediates?: VisionIntermediates } {
    const cfg = this.config;
    const m = cfg.spatialMergeSize;
    const N = pixelValues.shape[0];
    const sizes = checkGrid(gridThw, N, m);
    const inDim = this.weights.patchEmbed.inFeatures;
    if (pixelValues.shape[1] !== inDim) throw new RangeError(`pixelValues has ${pixelValues.shape[1]} columns, expected ${inDim} (C·T·P·P)`);
    const hd = this.headDim;
    const heads = cfg.numHeads;
    const E = cfg.embedDim;
    const act = activation(cfg.hiddenAct);
    const rot = visionRotPosEmb(gridThw, hd, m);
    const inter: Record<string, tf.Tensor2D> = {};
    // The whole tower runs in transposed layout: the residual stream is hT [E, N] (features x patches), so every
    // Linear is a plain W·xT (Linear.applyT) and no per-layer activation transposes are needed.
    const lnT = (xT: tf.Tensor, w: tf.Tensor1D, b: tf.Tensor1D) =>
      tf.tidy(() => {
        const mean = tf.mean(xT, 0, true);
        const xc = tf.sub(xT, mean);
        const variance = tf.mean(tf.square(xc), 0, true);
        return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, 1e-6))), tf.reshape(w, [-1, 1])), tf.reshape(b, [-1, 1])) as tf.Tensor2D;
      });
    const embeds = tf.tidy(() => {
      let hT = this.weights.patchEmbed.applyT(tf.transpose(pixelValues)); // [E, N]
      if (opts.intermediates) inter.patch_embed = tf.keep(tf.transpose(hT));
      const rotT = tf.tensor2d(rot, [N, hd / 2]);
      if (opts.intermediates) inter.rot_pos_emb = tf.keep(rotT.clone());
      const emb = tf.concat([rotT, rotT], -1); // [N, hd]
      const cosT = tf.reshape(tf.transpose(tf.cos(emb)), [1, hd, N]);
      const [s1, s2] = tf.split(tf.sin(emb), 2, -1);
      const sinSignedT = tf.reshape(tf.transpose(tf.concat([tf.neg(s1), s2], -1)), [1, hd, N]);
      const swapIdx = tf.tensor1d(
        Array.from({ length: hd }, (_, j) => (j + hd / 2) % hd),
        "int32",
      );
      // rotate_half along the head_dim axis (axis 1 of [heads, hd, N])
      const rope = (xT: tf.Tensor) => tf.add(tf.mul(xT, cosT), tf.mul(tf.gather(xT, swapIdx, 1), sinSignedT));
      const scale = 1 / Math.sqrt(hd);
      this.weights.blocks.forEach((blk, bi) => {
        hT = tf.tidy(() => {
          const xT = lnT(hT, blk.norm1.weight, blk.norm1.bias);
          const qkvT = tf.reshape(blk.qkv.applyT(xT), [3, heads, hd, N]);
          const [q0, k0, vT] = tf.unstack(qkvT, 0); // each [heads, hd, N]
          const qT = rope(q0);
          const kT = rope(k0);
          // attention kept to each image's own patches (cu_seqlens); a one-way tf.split has no gradient in tfjs
          const parts = (x: tf.Tensor) => (sizes.length === 1 ? [x] : tf.split(x, sizes, 2));
          const qs = parts(qT);
          const ks = parts(kT);
          const vs = parts(vT);
          const outs = qs.map((qi, i) => {
            const qh = tf.transpose(qi, [0, 2, 1]); // [heads, n, hd]
            const vh = tf.transpose(vs[i], [0, 2, 1]);
            const p = tf.softmax(tf.mul(bmm(qh, ks[i]), scale)); // [heads, n, n]
            return tf.transpose(bmm(p, vh), [0, 2, 1]); // [heads, hd, n]
          });
          const attT = tf.reshape(outs.length === 1 ? outs[0] : tf.concat(outs, 2), [E, N]) as tf.Tensor2D;
          const h1 = tf.add(hT, blk.proj.applyT(attT));
          const yT = blk.fc2.applyT(act(blk.fc1.applyT(lnT(h1, blk.norm2.weight, blk.norm2.bias))) as tf.Tensor2D);
          return tf.add(h1, yT) as tf.Tensor2D;
        });
        if (opts.intermediates) inter[`block${bi}`] = tf.keep(tf.transpose(hT));
      });
      // PatchMerger: ln_q, then each m² consecutive patches concatenated ([N, E].view(-1, m²E) in transposed layout)
      const ln = lnT(hT, this.weights.lnQ.weight, this.weights.lnQ.bias);
      const mm = m * m;
      const groupedT = tf.reshape(tf.transpose(tf.reshape(ln, [E, N / mm, mm]), [2, 0, 1]), [mm * E, N / mm]) as tf.Tensor2D;
      const outT = this.weights.mlp2.applyT(geluErf(this.weights.mlp0.applyT(groupedT)) as tf.Tensor2D);
      const out = tf.transpose(outT) as tf.Tensor2D;
      if (opts.intermediates) inter.merger = tf.keep(out.clone());
      return out;
    });
    return opts.intermediates ? { embeds, intermediates: inter as VisionIntermediates } : { embeds };
  }

  dispose(): void {
    const w = this.weights;
    w.patchEmbed.dispose();
    for (const b of w.blocks) {
      for (const t of [b.norm1.weight, b.norm1.bias, b.norm2.weight, b.norm2.bias]) t.dispose();
      for (const l of [b.qkv, b.proj, b.fc1, b.fc2]) l.dispose();
    }
    w.lnQ.weight.dispose();
    w.lnQ.bias.dispose();
    w.mlp0.dispose();
    w.mlp2.dispose();
  }
}
