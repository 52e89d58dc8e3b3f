import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { createRequire } from "node:module";
import path from "node:path";
import { BackendError } from "./errors";

export type BackendName = "tensorflow" | "webgpu" | "wasm" | "cpu";

export interface InitBackendOptions {
  /** Order of preference. Default: tensorflow, webgpu, wasm, cpu. RARL_BACKEND overrides it. */
  prefer?: BackendName[];
}

const require_ = createRequire(import.meta.url);
let chosen: BackendName | null = null;

async function tryWasm(): Promise<boolean> {
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  const dir = path.dirname(require_.resolve("@tensorflow/tfjs-backend-wasm"));
  wasm.setWasmPaths(`${dir}${path.sep}`);
  return tf.setBackend("wasm");
}

/**
 * Picks and starts a tfjs backend. Minimal version: wasm and cpu.
 * (Full version with tensorflow/webgpu and wasm kernel fixes: see the core README.)
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendName> {
  if (chosen) return chosen;
  const env = process.env.RARL_BACKEND as BackendName | undefined;
  const order = env ? [env] : (opts.prefer ?? ["wasm", "cpu"]);
  for (const name of order) {
    if (name === "wasm" && (await tryWasm())) chosen = "wasm";
    else if (name === "cpu" && (await tf.setBackend("cpu"))) chosen = "cpu";
    if (chosen) break;
  }
  if (!chosen) throw new BackendError(`No tfjs backend could start (tried ${order.join(", ")})`);
  await tf.ready();
  return chosen;
}
