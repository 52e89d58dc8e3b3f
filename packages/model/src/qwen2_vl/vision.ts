import * as tf from "@tensorflow/tfjs-core";
import type { Linear } from "../nn/linear";
import { activation, bmm, geluErf, layerNorm } from "../nn/ops";
import type { Qwen2VLVisionConfig } from "./config";
import { applyRotary, visionRotPosEmb } from "./rope";

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
    const embeds = tf.tidy(() => {
      let h = this.weights.patchEmbed.apply(pixelValues) as tf.Tensor2D;
      if (opts.intermediates) inter.patch_embed = tf.keep(h.clone());
      const rotT = tf.tensor2d(rot, [N, hd / 2]);
      if (opts.intermediates) inter.rot_pos_emb = tf.keep(rotT.clone());
      const emb = tf.concat([rotT, rotT], -1);
      const cos = tf.reshape(tf.cos(emb), [N, 1, hd]);
      const sinRaw = tf.sin(emb);
      const [s1, s2] = tf.split(sinRaw, 2, -1);
      const sinSigned = tf.reshape(tf.concat([tf.neg(s1), s2], -1), [N, 1, hd]);
      const scale = 1 / Math.sqrt(hd);
      this.weights.blocks.forEach((blk, bi) => {
        h = tf.tidy(() => {
          const x = layerNorm(h, blk.norm1.weight, blk.norm1.bias, 1e-6);
          const qkv = tf.reshape(blk.qkv.apply(x), [N, 3, heads, hd]);
          let [q, k, v] = tf.unstack(qkv, 1) as tf.Tensor3D[]; // [N, heads, hd]
          q = applyRotary(q, cos, sinSigned) as tf.Tensor3D;
          k = applyRotary(k, cos, sinSigned) as tf.Tensor3D;
          // (a one-way split has no gradient in tfjs: "Pass at least one tensor to concat")
          const parts = (x: tf.Tensor3D) => (sizes.length === 1 ? [x] : tf.split(x, sizes, 0));
          const qs = parts(q);
          const ks = parts(k);
          const vs = parts(v);
          const outs = qs.map((qi, i) => {
            const qh = tf.transpose(qi, [1, 0, 2]); // [heads, n, hd]
            const khT = tf.transpose(ks[i], [1, 2, 0]); // [heads, hd, n]
            const vh = tf.transpose(vs[i], [1, 0, 2]);
            const p = tf.softmax(tf.mul(bmm(qh, khT), scale));
            return tf.transpose(bmm(p, vh), [1, 0, 2]); // [n, heads, hd]
          });
          const att = tf.reshape(outs.length === 1 ? outs[0] : tf.concat(outs, 0), [N, E]);
          const h1 = tf.add(h, blk.proj.apply(att));
          const y = blk.fc2.apply(act(blk.fc1.apply(layerNorm(h1, blk.norm2.weight, blk.norm2.bias, 1e-6))));
          return tf.add(h1, y) as tf.Tensor2D;
        });
        if (opts.intermediates) inter[`block${bi}`] = tf.keep(h.clone());
      });
      const ln = layerNorm(h, this.weights.lnQ.weight, this.weights.lnQ.bias, 1e-6);
      const grouped = tf.reshape(ln, [N / (m * m), E * m * m]);
      const out = this.weights.mlp2.apply(geluErf(this.weights.mlp0.apply(grouped))) as tf.Tensor2D;
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
