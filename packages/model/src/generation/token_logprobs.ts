/**
 * Per-token log-probabilities straight from final hidden states and the lm_head weight, without ever holding the
 * full [N, V] logits (V = 151 936 for Qwen2-VL) at once, with a hand-written gradient.
 *
 * value_i = h_i · W[id_i] − logsumexp_v(h_i · W[v])                     (log-softmax at the chosen id)
 * d value_i / d h_i = W[id_i] − softmax(h_i Wᵀ) W                       (W is frozen: no gradient for it)
 *
 * Rows are processed in chunks: the forward pass keeps only the [N] result (the chunk's logits are freed at once),
 * the backward pass recomputes each chunk's softmax. On webgpu the forward's statistics (max, Σexp, target logit,
 * Σexp·logit for the entropy) come from one fused kernel per vocabulary chunk (@rarl/core logSoftmaxGatherStats).
 * A plain `logSoftmax(h Wᵀ)` + gather under a gradient tape would keep N×V floats (8 completions × 256 tokens × 151 936 × 4 B = 1.2 GB) alive until the backward pass.
 */
// tfjs-core's Node entry registers no gradients; @rarl/core registers them all when loaded (its backend module
// imports them), so importing from it guarantees autodiff works through this module.
import { combineLogSoftmaxStats, gradientsRegistered, logSoftmaxGatherAvailable, logSoftmaxGatherStats, webgpuBindingLimit } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { VocabChunks } from "../nn/vocab_chunks";

/** Rows per chunk so that one chunk's [chunk, V] logits stay near `budgetFloats` floats (default 16M = 64 MB). */
export function chunkRows(vocab: number, budgetFloats = 16 * 1024 * 1024): number {
  return Math.max(1, Math.floor(budgetFloats / vocab));
}

/**
 * Log-softmax of `hidden @ weightᵀ` at `ids`, differentiable w.r.t. `hidden` (and through it, e.g. LoRA weights).
 * @param hidden [N, H] final (normed) hidden states.
 * @param weight [V, H] lm_head weight (PyTorch layout, the tied embedding for Qwen2-VL-2B). Treated as constant.
 * @param ids [N] int32 target ids.
 * @param chunk rows per chunk.
 * @param weightT optional [H, V] transposed copy of `weight`: logits are then `h @ weightT`, several times faster on
 *   wasm than `(weight · hᵀ)ᵀ` for few rows (see ./lm_head.ts).
 * @param entropyOut when given, its `entropy` receives the [N] per-row entropy −Σ_v p_v log p_v of the same softmax,
 *   computed in the same chunk pass (one more exp over each chunk's logits, no second lm_head matmul); it carries no
 *   gradient and the caller owns it (TRL computes the entropy in the same pass as the log-probs).
 * @returns [N] float32 log-probs.
 */
export function tokenLogprobs(
  hidden: tf.Tensor2D,
  weight: tf.Tensor2D | VocabChunks,
  ids: tf.Tensor1D,
  chunk?: number,
  weightT?: tf.Tensor2D,
  entropyOut?: { entropy?: tf.Tensor1D },
): tf.Tensor1D {
  if (!gradientsRegistered()) throw new Error("tokenLogprobs: tfjs gradients are not registered (import @rarl/core)");
  const [n, h] = hidden.shape;
  const chunked = weight instanceof VocabChunks;
  const [V, H] = chunked ? [weight.rows, weight.cols] : weight.shape;
  if (H !== h) throw new Error(`tokenLogprobs: hidden [${hidden.shape}] does not match lm_head ${chunked ? `chunks [${V}, ${H}]` : `weight [${weight.shape}]`}`);
  if (ids.shape[0] !== n) throw new Error(`tokenLogprobs: ids [${ids.shape}] does not match hidden [${hidden.shape}]`);
  if (ids.dtype !== "int32") throw new Error(`tokenLogprobs: ids must be int32, got ${ids.dtype}`);
  if (!chunked && weightT && (weightT.shape[0] !== h || weightT.shape[1] !== V)) throw new Error(`tokenLogprobs: weightT [${weightT.shape}] is not the transpose of [${weight.shape}]`);
  const lm = chunked ? weight : plainLmHead(weight, weightT);
  // Vocabulary chunks (webgpu, a matrix larger than one storage binding): each row block's [c, V] logits also stay
  // within the binding limit.
  const rows = chunk ?? (chunked ? chunkRows(V, Math.min(16 * 1024 * 1024, Math.floor(webgpuBindingLimit() / 4))) : chunkRows(V));
  const bounds: Array<[number, number]> = [];
  for (let s = 0; s < n; s += rows) bounds.push([s, Math.min(n, s + rows)]);

  // The forward's log-softmax statistics by @rarl/core's fused kernel on webgpu; other backends run the tfjs ops below.
  const fusedStats = logSoftmaxGatherAvailable();
  const f = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    const hx = x as tf.Tensor2D;
    save([hx, ids]); // ids too: the caller may dispose it (e.g. at the end of a tidy) before the backward pass
    const value = tf.tidy(() => {
      const ents: tf.Tensor[] = [];
      const parts = bounds.map(([a, b]) => {
        const hc = tf.slice(hx, [a, 0], [b - a, h]);
        const idc = tf.slice(ids, [a], [b - a]) as tf.Tensor1D;
        if (fusedStats) {
          // webgpu: per vocabulary chunk, one fused kernel gives max, Σexp, the target logit and Σexp·x; the chunks
          // combine with online-softmax rescaling (no [c, V] concat, softmax or exp in generic kernels).
          const st = combineLogSoftmaxStats(lm.chunkLogits(hc).map(([l, start]) => logSoftmaxGatherStats(l, idc, start)));
          if (entropyOut) ents.push(tf.sub(st.lse, st.meanLogit));
          return tf.sub(st.target, st.lse);
        }
        const logits = lm.logits(hc);
        const lse = tf.logSumExp(logits, 1); // [c]
        // H = lse − Σ_v softmax_v · logit_v
        if (entropyOut) ents.push(tf.sub(lse, tf.sum(tf.mul(tf.exp(tf.sub(logits, tf.reshape(lse, [-1, 1]))), logits), 1)));
        const picked = tf.sum(tf.mul(lm.gather(idc), hc), 1); // [c]
        return tf.sub(picked, lse);
      });
      if (entropyOut) entropyOut.entropy = tf.keep((ents.length === 1 ? ents[0] : tf.concat(ents, 0)) as tf.Tensor1D);
      return parts.length === 1 ? parts[0] : tf.concat(parts, 0);
    });
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const hs = saved[0] as tf.Tensor2D;
      const idsSaved = saved[1] as tf.Tensor1D;
      return tf.tidy(() => {
        const parts = bounds.map(([a, b]) => {
          const hc = tf.slice(hs, [a, 0], [b - a, h]);
          const idc = tf.slice(idsSaved, [a], [b - a]) as tf.Tensor1D;
          const dyc = tf.reshape(tf.slice(dy, [a], [b - a]), [b - a, 1]);
          const expected = lm.weightedSum(tf.softmax(lm.logits(hc)) as tf.Tensor2D); // [c, H]
          return tf.mul(dyc, tf.sub(lm.gather(idc), expected));
        });
        return parts.length === 1 ? parts[0] : tf.concat(parts, 0);
      });
    };
    return { value, gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(hidden) as tf.Tensor1D;
}

/** The lm_head products tokenLogprobs needs, as {@link VocabChunks} offers them, over one [V, H] weight. */
function plainLmHead(weight: tf.Tensor2D, weightT?: tf.Tensor2D): Pick<VocabChunks, "logits" | "chunkLogits" | "gather" | "weightedSum"> {
  // [c, V] logits of a chunk, softmax axis last.
  const logits = (hc: tf.Tensor2D): tf.Tensor2D => (weightT ? tf.matMul(hc, weightT) : (tf.transpose(tf.matMul(weight, tf.transpose(hc))) as tf.Tensor2D));
  return {
    logits,
    chunkLogits: (hc) => [[logits(hc), 0]],
    gather: (idc) => tf.gather(weight, idc) as tf.Tensor2D,
    weightedSum: (p) => tf.matMul(p, weight),
  };
}
