/**
 * Opt-in multi-threaded wasm under Node (RARL_WASM_THREADS=2). tfjs-backend-wasm 4.22 disables threads in Node
 * (WASM_HAS_MULTITHREAD_SUPPORT is false there); forcing it on needs three patches (docs/engineering-notes.md):
 *  1. the pthread worker script must be a file path, not a `blob:` URL: we write tfjs's worker source to a temp
 *     .cjs file and hand out its path when tfjs asks URL.createObjectURL for the worker blob;
 *  2. the worker must load the Emscripten factory from a file whose `require`s are plain (the Node bundle's copy
 *     refers to rollup's `require$$N` locals), so the worker is pointed at wasm-out/tfjs-backend-wasm-threaded-simd.js;
 *  3. tfjs caps the thread count at logical cores / 2, so os.cpus() reports 2 x threads while the backend starts.
 * The pthread workers are unref'd afterwards, so a threaded backend no longer keeps the process alive.
 */
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import * as tf from "@tensorflow/tfjs-core";

const require_ = createRequire(import.meta.url);

interface PThreadLike {
  unusedWorkers: { unref?: () => void }[];
  runningWorkers: { unref?: () => void }[];
  allocateUnusedWorker?: () => void;
}

/** Installs the patches; call after importing tfjs-backend-wasm and before the wasm backend starts. Returns an undo for the os.cpus patch. */
export function prepareWasmThreads(wasm: { setThreadsCount(n: number): void }, threads: number): () => void {
  const pkgDir = path.dirname(require_.resolve("@tensorflow/tfjs-backend-wasm/package.json"));
  const factoryPath = path.join(pkgDir, "wasm-out", "tfjs-backend-wasm-threaded-simd.js");
  const { wasmWorkerContents } = require_(path.join(pkgDir, "wasm-out", "tfjs-backend-wasm-threaded-simd.worker.js")) as {
    wasmWorkerContents: string;
  };
  const shim = `;(function(){var orig=self.onmessage;self.onmessage=function(e){if(e.data&&e.data.cmd==="load"&&typeof e.data.urlOrBlob!=="string"){e.data.urlOrBlob=${JSON.stringify(factoryPath)};}return orig(e);};})();`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-wasm-"));
  const workerPath = path.join(dir, "tfjs-backend-wasm-threaded-simd.worker.cjs");
  fs.writeFileSync(workerPath, wasmWorkerContents.replace(/\n/g, "\\n") + shim);
  process.once("exit", () => fs.rmSync(dir, { recursive: true, force: true }));

  // (1) tfjs builds the worker blob from wasmWorkerContents with "\n" escaped; recognise it by type and size.
  const expectedSize = Buffer.byteLength(wasmWorkerContents.replace(/\n/g, "\\n"), "utf8");
  const origCreate = URL.createObjectURL.bind(URL);
  URL.createObjectURL = (obj: Blob | MediaSource) => {
    if (obj instanceof Blob && obj.type === "application/javascript" && obj.size === expectedSize) return workerPath;
    return origCreate(obj as Blob);
  };

  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  wasm.setThreadsCount(threads);

  // (3) thread cap = logical cores / 2
  const origCpus = os.cpus;
  const real = origCpus();
  if (real.length < 2 * threads) {
    os.cpus = () => Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]);
  }
  return () => {
    os.cpus = origCpus;
  };
}

/** Unrefs the pthread workers of a started threaded wasm backend (and future ones), so the process can exit. */
export function unrefWasmWorkers(): number {
  const backend = tf.findBackend("wasm") as unknown as { wasm?: { PThread?: PThreadLike } } | null;
  const pt = backend?.wasm?.PThread;
  if (!pt) return 0;
  const all = [...pt.unusedWorkers, ...pt.runningWorkers];
  for (const w of all) w.unref?.();
  const alloc = pt.allocateUnusedWorker;
  if (alloc && !(alloc as { rarlPatched?: boolean }).rarlPatched) {
    const patched = function (this: PThreadLike) {
      alloc.call(this);
      this.unusedWorkers.at(-1)?.unref?.();
    };
    (patched as { rarlPatched?: boolean }).rarlPatched = true;
    pt.allocateUnusedWorker = patched;
  }
  return all.length;
}

/** Threads the started wasm backend actually uses (1 when single-threaded). */
export async function wasmThreadsInUse(): Promise<number> {
  const wasm = (await import("@tensorflow/tfjs-backend-wasm")) as unknown as { getThreadsCount?: () => number };
  return wasm.getThreadsCount?.() ?? 1;
}
