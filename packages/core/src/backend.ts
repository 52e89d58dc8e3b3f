import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "./gradients";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { BackendError } from "./errors";
import { getLogger } from "./logger";
import { applyWasmKernelFixes } from "./wasm-fixes";
import { prepareWebgpu, WebgpuUnavailable } from "./webgpu";
import { prepareWasmThreads, unrefWasmWorkers } from "./wasm-threads";

/** tfjs backends @rarl/core can start, in default order of preference. */
export type BackendName = "tensorflow" | "webgpu" | "wasm" | "cpu";

export const BACKEND_ORDER: readonly BackendName[] = ["tensorflow", "webgpu", "wasm", "cpu"];

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /**
   * Backends to try, in order. Default: tensorflow (native libtensorflow via the optional peer
   * @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node), webgpu (needs a `navigator.gpu`, in Node the optional
   * `webgpu` package), wasm, cpu. The env var RARL_BACKEND (one name or a comma-separated list) overrides it.
   * When the list is given explicitly (here or by RARL_BACKEND) and none starts, a BackendError says how to install them.
   */
  prefer?: BackendName[];
  /**
   * wasm threads (1 or 2+; default from RARL_WASM_THREADS, else 1). Threads are opt-in: on a shared 2-core machine
   * 2 threads are slower than 1. Only takes effect when the wasm backend is first started.
   */
  wasmThreads?: number;
}

const require_ = createRequire(import.meta.url);
const log = getLogger("core:backend");
let chosen: BackendName | null = null;
let wasmRegistered: Promise<void> | null = null;
let wasmThreads = 1;

const INSTALL_HINT: Record<BackendName, string> = {
  tensorflow:
    "install the optional peer: `npm install @tensorflow/tfjs-node@4.22.0` (CPU) or `npm install @tensorflow/tfjs-node-gpu@4.22.0` (CUDA); its version must match @tensorflow/tfjs-core 4.22.0 so both share one tfjs-core",
  webgpu:
    "in Node install the optional `webgpu` package (`npm install webgpu@0.6.2`, Dawn) so that navigator.gpu exists, and make sure an adapter is visible: a Vulkan driver on Linux (NVIDIA's, or mesa-vulkan-drivers + libvulkan1), Metal on macOS, D3D12 on Windows; for a software adapter on Linux Debian's libegl-mesa0 libgles2 libgl1-mesa-dri (see the README's GPU section)",
  wasm: "@tensorflow/tfjs-backend-wasm ships with @rarl/core; reinstall dependencies (`npm ci`) if its .wasm files are missing",
  cpu: "@tensorflow/tfjs-backend-cpu ships with @rarl/core; reinstall dependencies (`npm ci`)",
};

function parseEnvOrder(v: string): BackendName[] {
  const names = v
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);
  for (const n of names) {
    if (!BACKEND_ORDER.includes(n as BackendName)) {
      throw new BackendError(`RARL_BACKEND="${v}": unknown backend "${n}" (expected one of ${BACKEND_ORDER.join(", ")})`, {
        code: "BACKEND_UNKNOWN",
        details: { value: v },
      });
    }
  }
  return names as BackendName[];
}

// A variable specifier keeps bundlers from trying to resolve the optional peers at build time.
let importOptional: (name: string) => Promise<unknown> = (name) => import(/* @vite-ignore */ name);

/** Test hook: replaces how optional packages (tfjs-node, tfjs-node-gpu, webgpu) are imported; returns the previous one. */
export function setOptionalImporter(fn: (name: string) => Promise<unknown>): (name: string) => Promise<unknown> {
  const prev = importOptional;
  importOptional = fn;
  return prev;
}

/** Registers the wasm backend (files from node_modules, no network), its kernel fixes and optional threads. */
export async function registerWasmBackend(threads?: number): Promise<void> {
  if (!wasmRegistered) {
    wasmRegistered = (async () => {
      const wasm = (await import("@tensorflow/tfjs-backend-wasm")) as unknown as {
        setWasmPaths(prefix: string): void;
        setThreadsCount(n: number): void;
      };
      const dir = path.dirname(require_.resolve("@tensorflow/tfjs-backend-wasm"));
      wasm.setWasmPaths(`${dir}${path.sep}`);
      applyWasmKernelFixes();
      const want = threads ?? Number(process.env.RARL_WASM_THREADS ?? 1);
      if (!Number.isInteger(want) || want < 1) {
        throw new BackendError(`RARL_WASM_THREADS must be a positive integer, got "${process.env.RARL_WASM_THREADS}"`, { code: "BACKEND_THREADS" });
      }
      if (want > 1) {
        const undo = prepareWasmThreads(wasm, want);
        try {
          await tf.setBackend("wasm");
        } finally {
          undo();
        }
        unrefWasmWorkers();
        wasmThreads = want;
      }
    })();
  }
  return wasmRegistered;
}

async function tryTensorflow(): Promise<string | null> {
  const errors: string[] = [];
  for (const pkg of ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]) {
    try {
      await importOptional(pkg);
    } catch (e) {
      errors.push(`${pkg}: ${(e as Error).message.split("\n")[0]}`);
      continue;
    }
    if (!tf.findBackendFactory("tensorflow")) {
      return `${pkg} loaded but registered no "tensorflow" backend with this @tensorflow/tfjs-core (${tf.version_core}); install a matching 4.22.0 so both share one tfjs-core`;
    }
    if (await tf.setBackend("tensorflow")) return null;
    errors.push(`${pkg}: backend failed to start`);
  }
  return errors.join("; ");
}

/**
 * Why the automatic pick (no RARL_BACKEND, no `prefer`) should not probe webgpu on this machine, or null to probe.
 * On Linux, Dawn's Vulkan and OpenGL backends open a GPU device node (/dev/dri/renderD* or card*, /dev/nvidia*, WSL's
 * /dev/dxg); with none there can be no hardware adapter, and loading Dawn only to find a software one prints native
 * warnings on stderr (from Dawn and mesa, which JS cannot silence) and costs start-up time. Named explicitly, webgpu
 * is always probed. macOS and Windows are always probed.
 */
export function webgpuAutoProbeSkip(platform: NodeJS.Platform = process.platform, devDir = "/dev"): string | null {
  if (platform !== "linux") return null;
  const has = (dir: string, re: RegExp) => {
    try {
      return fs.readdirSync(dir).some((n) => re.test(n));
    } catch {
      return false;
    }
  };
  if (has(path.join(devDir, "dri"), /^(renderD|card)\d+$/) || has(devDir, /^(nvidia\d+|dxg)$/)) return null;
  return `no GPU device node (${devDir}/dri/renderD*, ${devDir}/nvidia*, ${devDir}/dxg), so no hardware adapter; not probed (name webgpu explicitly, RARL_BACKEND=webgpu, to use a software adapter)`;
}

async function tryWebgpu(allowSoftware: boolean): Promise<string | null> {
  if (!allowSoftware) {
    const skip = webgpuAutoProbeSkip();
    if (skip) return skip;
  }
  try {
    const info = await prepareWebgpu(importOptional);
    // A software adapter (mesa's llvmpipe/lavapipe, SwiftShader) is slower than wasm: only used when asked for by name.
    if (info.software && !allowSoftware) return `only a software adapter (${info.device || info.description}); name webgpu explicitly (RARL_BACKEND=webgpu) to use it`;
  } catch (e) {
    if (e instanceof WebgpuUnavailable) return e.message;
    throw e;
  }
  return (await tf.setBackend("webgpu")) ? null : "webgpu backend failed to start (device request failed; see the warning above)";
}

async function tryWasm(threads?: number): Promise<string | null> {
  try {
    await registerWasmBackend(threads);
    return (await tf.setBackend("wasm")) ? null : "wasm backend failed to start";
  } catch (e) {
    if (e instanceof BackendError) throw e;
    return (e as Error).message;
  }
}

async function tryBackend(name: BackendName, opts: InitBackendOptions, explicit: boolean): Promise<string | null> {
  switch (name) {
    case "tensorflow":
      return tryTensorflow();
    case "webgpu":
      return tryWebgpu(explicit);
    case "wasm":
      return tryWasm(opts.wasmThreads);
    case "cpu": {
      if (!(await tf.setBackend("cpu"))) return "cpu backend failed to start";
      // tfjs-backend-cpu prints a "install tfjs-node" banner on its first write in Node; the choice is logged here
      // instead, and the tensorflow backend's install hint is in BackendError / the README.
      const cpu = tf.findBackend("cpu") as { firstUse?: boolean } | null;
      if (cpu && "firstUse" in cpu) cpu.firstUse = false;
      return null;
    }
  }
}

/**
 * Picks and starts a tfjs backend: the first of `prefer` (or RARL_BACKEND, or tensorflow, webgpu, wasm, cpu) that
 * starts. Logs the choice once per change (logger "core:backend"). A call without a list (and without RARL_BACKEND)
 * returns the running backend; a call whose list starts with the running backend returns it; any other list re-selects.
 * Throws BackendError, with install instructions, when an explicitly requested list fails.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendName> {
  const env = process.env.RARL_BACKEND?.trim();
  const explicit = Boolean(env) || opts.prefer !== undefined;
  const order = env ? parseEnvOrder(env) : (opts.prefer ?? [...BACKEND_ORDER]);
  if (order.length === 0) throw new BackendError("initBackend: empty backend list", { code: "BACKEND_UNKNOWN" });
  // Already running: keep it when no list was given, or when it is the list's first choice; otherwise re-select
  // (backends already registered start again cheaply; missing optional packages fail fast).
  if (chosen && tf.getBackend() === chosen && (!explicit || order[0] === chosen)) return chosen;
  const failures: string[] = [];
  for (const name of order) {
    const why = await tryBackend(name, opts, explicit);
    if (why === null) {
      await tf.ready();
      if (chosen !== name) {
        log.info("tfjs backend ready", { backend: name, ...(name === "wasm" ? { threads: wasmThreads } : {}), tried: order.slice(0, order.indexOf(name) + 1).join(",") });
      }
      chosen = name;
      return name;
    }
    failures.push(`${name}: ${why}`);
    log.debug("backend unavailable", { backend: name, reason: why });
  }
  const hints = order.map((n) => `  - ${n}: ${INSTALL_HINT[n]}`).join("\n");
  throw new BackendError(
    `No requested tfjs backend could start (${explicit ? "requested" : "tried"}: ${order.join(", ")}).\n${failures.map((f) => `  - ${f}`).join("\n")}\nHow to install:\n${hints}`,
    { code: "BACKEND_UNAVAILABLE", details: { order, failures } },
  );
}

/** The backend chosen by {@link initBackend}, or null before it ran. */
export function getBackendName(): BackendName | null {
  return chosen;
}

/** Threads of the wasm backend (1 unless RARL_WASM_THREADS / wasmThreads asked for more when wasm started). */
export function getWasmThreads(): number {
  return wasmThreads;
}
