/** Helpers shared by the matmul kernel tests and bench/matmul-gpu.ts (not part of the package API; no vitest). */
import * as tf from "@tensorflow/tfjs-core";
import { Rng } from "../rng";

/** N(0, 1) values for `shape`, from seed `seed`. */
export function randn(shape: number[], seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal());
}

/** One product: shapes of a and b, transposes, and a label for messages. */
export type MatmulCase = { a: number[]; b: number[]; tA?: boolean; tB?: boolean; label: string };

/** tf.matMul of `c` on `backend`, read back. */
export async function matmulProduct(backend: string, c: MatmulCase, a: Float32Array, b: Float32Array): Promise<{ y: Float32Array; shape: number[] }> {
  await tf.setBackend(backend);
  const y = tf.tidy(() => tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.tA ?? false, c.tB ?? false));
  const out = { y: (await y.data()) as Float32Array, shape: y.shape };
  y.dispose();
  return out;
}

/** Shader keys of the webgpu programs that `f` runs (a spy on the backend's runWebGPUProgram). */
export async function programsRun(f: () => Promise<void>): Promise<string[]> {
  await tf.setBackend("webgpu");
  const be = tf.backend() as unknown as { runWebGPUProgram: (p: { shaderKey: string }, ...rest: unknown[]) => unknown };
  const orig = be.runWebGPUProgram;
  const keys: string[] = [];
  be.runWebGPUProgram = function (this: unknown, p: { shaderKey: string }, ...rest: unknown[]) {
    const r = orig.call(this, p, ...rest);
    keys.push(p.shaderKey);
    return r;
  };
  try {
    await f();
  } finally {
    be.runWebGPUProgram = orig;
  }
  return keys;
}
