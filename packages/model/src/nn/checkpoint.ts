/**
 * Activation (gradient) checkpointing for tfjs, as `torch.utils.checkpoint` / transformers' `gradient_checkpointing`:
 * a block runs under one custom-gradient op whose forward pass keeps only the block's inputs, and whose backward pass
 * runs the block again under a fresh gradient tape and back-propagates through that recomputation.
 *
 * Why: tfjs's tape keeps every tensor each op saves for its gradient (activations, softmax outputs, ...) until the
 * backward pass ends, so a decoder's backward peak holds the saved intermediates of every layer at once. With one
 * checkpoint per layer the forward pass keeps one [B, S, H] input per layer, and the backward pass holds one layer's
 * intermediates at a time, for the price of a second forward pass of each layer.
 *
 * How it sits on tfjs-core 4.22's engine (pinned; read in node_modules/@tensorflow/tfjs-core/dist/engine.js):
 * - `tf.customGrad`'s forward runs at `kernelDepth > 0`, so none of the block's ops are recorded on the tape; the
 *   block's intermediates are freed by the forward's tidy. `save()` keeps (clones; the clone shares the buffer on
 *   cpu and, with @rarl/core's Identity, on wasm) the inputs and constants for the backward pass.
 * - Only tensors passed as arguments of a custom op get a gradient from the outer tape, so the trainable variables
 *   the block reads are passed as extra arguments, and the backward returns their gradients.
 * - A custom op has one output: several outputs are flattened and concatenated, then sliced back (differentiable).
 * - The backward calls `tf.engine().gradients` again. At gradient depth 0 that call replaces the engine's
 *   `activeTape` with a new one and nulls it when done, while the outer backward pass still needs its own (it frees
 *   the outer tape's saved tensors with it at the end), so the outer tape is put back afterwards.
 */
import * as tf from "@tensorflow/tfjs-core";

interface EngineState {
  gradientDepth: number;
  kernelDepth: number;
  activeTape: unknown;
}

function engineState(): EngineState {
  return (tf.engine() as unknown as { state: EngineState }).state;
}

/** Whether ops run now are recorded on a gradient tape (inside tf.grad / tf.variableGrads, not inside a kernel). */
export function isRecordingGradients(): boolean {
  const s = engineState();
  return s.gradientDepth > 0 && s.kernelDepth === 0;
}

/**
 * A block to checkpoint: `inputs` are differentiable tensors (they get gradients), `constants` are tensors the block
 * reads that need no gradient (masks, RoPE tables: they must not depend on any trainable variable). It must return
 * new float32 tensors (not its inputs), compute the same values each time it is called (no unseeded randomness:
 * dropout masks would differ in the recomputation), and leave no other tensor alive beyond what a tf.tidy frees
 * (tensors it `tf.keep`s are disposed by {@link checkpoint} after use).
 */
export type CheckpointBlock = (inputs: tf.Tensor[], constants: tf.Tensor[]) => tf.Tensor[];

/**
 * Runs `block(inputs, constants)` as a checkpointed op when a gradient tape is recording, else plainly.
 *
 * @param variables every trainable tf.Variable the block reads (LoRA A/B, full-fine-tuning weights): they get their
 *   gradients through this op; a variable read by the block but missing here gets no gradient from it.
 * @returns the block's outputs (same shapes); under a tape they are slices of one packed tensor when there are several.
 */
export function checkpoint(block: CheckpointBlock, inputs: tf.Tensor[], constants: tf.Tensor[], variables: tf.Variable[]): tf.Tensor[] {
  if (!isRecordingGradients()) return block(inputs, constants);
  const vars = [...new Set(variables)];
  const nIn = inputs.length;
  let shapes: number[][] = [];
  const run = (xs: tf.Tensor[], cs: tf.Tensor[]): tf.Tensor => {
    const outs = block(xs, cs);
    shapes = outs.map((o) => o.shape);
    if (outs.length === 1) return outs[0];
    const packed = tf.concat(outs.map((o) => tf.reshape(o, [-1])), 0);
    for (const o of outs) if (o.kept) o.dispose(); // the rest is freed by the surrounding tidy
    return packed;
  };
  const op = tf.customGrad(((...args: unknown[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const xs = args.slice(0, nIn) as tf.Tensor[];
    save([...xs, ...constants]);
    const value = run(xs, constants);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
      const sx = saved.slice(0, nIn);
      const sc = saved.slice(nIn);
      const state = engineState();
      const outerTape = state.activeTape;
      try {
        const { value: y, grads } = tf.engine().gradients(() => run(sx, sc), [...sx, ...vars], dy, true);
        y.dispose();
        return grads.map((g, i) => g ?? tf.zeros(i < nIn ? sx[i].shape : vars[i - nIn].shape));
      } finally {
        state.activeTape = outerTape;
      }
    };
    return { value, gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  const packed = op(...inputs, ...vars) as tf.Tensor;
  if (shapes.length === 1) return [packed];
  const outs: tf.Tensor[] = [];
  let at = 0;
  for (const s of shapes) {
    const n = s.reduce((a, b) => a * b, 1);
    outs.push(tf.reshape(tf.slice(packed, [at], [n]), s));
    at += n;
  }
  packed.dispose(); // the slices' tape nodes keep what their gradients need
  return outs;
}
