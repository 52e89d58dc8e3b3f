import { createRequire } from "node:module";
import * as tf from "@tensorflow/tfjs-core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { BACKEND_ORDER, getBackendName, initBackend } from "./backend";
import { BackendError } from "./errors";
import { captureLogsAsync } from "./testing/logs";

const saved = { backend: process.env.RARL_BACKEND, level: process.env.RARL_LOG_LEVEL };
afterEach(() => {
  for (const [k, v] of [
    ["RARL_BACKEND", saved.backend],
    ["RARL_LOG_LEVEL", saved.level],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

describe("initBackend", () => {
  it("starts the backend named by RARL_BACKEND and reports it", async () => {
    const want = process.env.RARL_BACKEND ?? "wasm";
    const warn = vi.spyOn(console, "warn");
    try {
      expect(await initBackend()).toBe(want);
      expect(getBackendName()).toBe(want);
      expect(tf.getBackend()).toBe(want);
      const s = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).arraySync());
      expect(s).toEqual([4, 6]);
      // no "install tfjs-node" banner from tfjs-backend-cpu's first write (meaningful in the RARL_BACKEND=cpu run)
      expect(warn.mock.calls.flat().join(" ")).not.toContain("tfjs-node");
    } finally {
      warn.mockRestore();
    }
  });

  it("logs the chosen backend once per switch", async () => {
    delete process.env.RARL_BACKEND;
    await initBackend({ prefer: ["wasm"] }); // known starting point, whatever ran before
    process.env.RARL_LOG_LEVEL = "info";
    const { lines } = await captureLogsAsync(async () => {
      await initBackend({ prefer: ["cpu"] });
      await initBackend({ prefer: ["cpu"] });
      await initBackend({ prefer: ["wasm", "cpu"] });
      await initBackend({ prefer: ["wasm"] });
    });
    const ready = lines.filter((l) => l.includes("tfjs backend ready"));
    expect(ready).toHaveLength(2);
    expect(ready[0]).toContain("backend=cpu");
    expect(ready[1]).toContain("backend=wasm");
    expect(tf.getBackend()).toBe("wasm");
  });

  it.skipIf(installed("@tensorflow/tfjs-node") || installed("@tensorflow/tfjs-node-gpu"))(
    "an explicitly requested but missing tensorflow backend gives a BackendError that says how to install it (skipped when tfjs-node is installed)",
    async () => {
      delete process.env.RARL_BACKEND;
      const err = await initBackend({ prefer: ["tensorflow"] }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toContain("npm install @tensorflow/tfjs-node@4.22.0");
      expect(err.message).toContain("@tensorflow/tfjs-node-gpu");
      process.env.RARL_BACKEND = "tensorflow";
      await expect(initBackend({ prefer: ["cpu"] })).rejects.toThrow(BackendError); // env overrides prefer
    },
  );

  it.skipIf(installed("webgpu"))("a requested webgpu without navigator.gpu gives a BackendError naming the `webgpu` package (skipped when it is installed)", async () => {
    delete process.env.RARL_BACKEND;
    const err = await initBackend({ prefer: ["webgpu"] }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/optional `webgpu` package/);
  });

  it("falls through to the next backend in the list and rejects unknown names in RARL_BACKEND", async () => {
    process.env.RARL_BACKEND = "webgpu,cpu";
    if (!installed("webgpu")) expect(await initBackend()).toBe("cpu");
    process.env.RARL_BACKEND = "tpu";
    await expect(initBackend()).rejects.toThrow(/unknown backend "tpu"/);
  });
});

describe("gradients", () => {
  it("@rarl/core registers tfjs-core's gradients (the Node entry of tfjs-core registers none)", async () => {
    const { gradientsRegistered } = await import("./gradients");
    expect(gradientsRegistered()).toBe(true);
    await initBackend();
    const g = tf.tidy(() => Array.from(tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.softmax(x), tf.tensor1d([1, 0, 0]))))(tf.tensor1d([0, 0, 0])).dataSync()));
    // d softmax_0 / dx = p0 (delta - p): p = 1/3 -> [2/9, -1/9, -1/9]
    expect(g[0]).toBeCloseTo(2 / 9, 6);
    expect(g[1]).toBeCloseTo(-1 / 9, 6);
  });
});

describe("optional backends (simulated packages)", () => {
  it("tensorflow comes first in the default order when tfjs-node registers a 'tensorflow' backend; tfjs-node-gpu is tried before it", async () => {
    delete process.env.RARL_BACKEND;
    const { MathBackendCPU } = await import("@tensorflow/tfjs-backend-cpu");
    const tried: string[] = [];
    const { setOptionalImporter } = await import("./backend");
    const prev = setOptionalImporter(async (name) => {
      tried.push(name);
      if (name !== "@tensorflow/tfjs-node") throw new Error(`Cannot find module '${name}'`);
      if (!tf.findBackendFactory("tensorflow")) tf.registerBackend("tensorflow", () => new MathBackendCPU(), 0);
      return {};
    });
    try {
      expect(BACKEND_ORDER[0]).toBe("tensorflow");
      expect(await initBackend({ prefer: [...BACKEND_ORDER] })).toBe("tensorflow");
      expect(tried).toEqual(["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"]);
      expect(getBackendName()).toBe("tensorflow");
    } finally {
      setOptionalImporter(prev);
      if (tf.findBackendFactory("tensorflow")) tf.removeBackend("tensorflow");
      await initBackend({ prefer: ["wasm"] });
    }
  });

  it("a tfjs-node that loads but registers nothing (another tfjs-core copy) is reported as a version mismatch", async () => {
    delete process.env.RARL_BACKEND;
    const { setOptionalImporter } = await import("./backend");
    const prev = setOptionalImporter(async () => ({}));
    try {
      const err = await initBackend({ prefer: ["tensorflow"] }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toMatch(/registered no "tensorflow" backend.*matching 4\.22\.0/);
    } finally {
      setOptionalImporter(prev);
    }
  });

  it("a webgpu package without a usable adapter makes webgpu unavailable", async () => {
    delete process.env.RARL_BACKEND;
    const { setOptionalImporter } = await import("./backend");
    const hadNavigator = "navigator" in globalThis;
    // A real navigator.gpu (the webgpu package, started by the tests below at collection) is set aside meanwhile.
    const realGpu = (globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu;
    if (realGpu) Reflect.deleteProperty((globalThis as { navigator: object }).navigator, "gpu");
    const prev = setOptionalImporter(async (name) => {
      if (name !== "webgpu") throw new Error("no");
      return { create: () => ({ requestAdapter: async () => null }), globals: {} };
    });
    try {
      const err = await initBackend({ prefer: ["webgpu"] }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toContain("no GPU adapter");
    } finally {
      setOptionalImporter(prev);
      const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
      if (!hadNavigator) delete (globalThis as { navigator?: unknown }).navigator;
      else if (nav) Reflect.deleteProperty(nav, "gpu");
      if (realGpu) Object.defineProperty((globalThis as { navigator: object }).navigator, "gpu", { value: realGpu, configurable: true });
    }
  });
});

describe("automatic pick: webgpu is probed only where a hardware adapter can exist", () => {
  it("on Linux, skips Dawn without a GPU device node and probes with one; other platforms always probe", async () => {
    const { webgpuAutoProbeSkip } = await import("./backend");
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dev = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-dev-"));
    try {
      expect(webgpuAutoProbeSkip("linux", dev)).toMatch(/no GPU device node .*not probed \(name webgpu explicitly/);
      fs.mkdirSync(path.join(dev, "dri"));
      fs.writeFileSync(path.join(dev, "dri", "by-path"), "");
      expect(webgpuAutoProbeSkip("linux", dev)).not.toBeNull();
      fs.writeFileSync(path.join(dev, "dri", "renderD128"), "");
      expect(webgpuAutoProbeSkip("linux", dev)).toBeNull();
      fs.rmSync(path.join(dev, "dri"), { recursive: true });
      fs.writeFileSync(path.join(dev, "nvidia0"), "");
      expect(webgpuAutoProbeSkip("linux", dev)).toBeNull();
      fs.rmSync(path.join(dev, "nvidia0"));
      fs.writeFileSync(path.join(dev, "nvidiactl"), "");
      expect(webgpuAutoProbeSkip("linux", dev)).not.toBeNull();
      expect(webgpuAutoProbeSkip("darwin", dev)).toBeNull();
      expect(webgpuAutoProbeSkip("win32", dev)).toBeNull();
    } finally {
      fs.rmSync(dev, { recursive: true, force: true });
    }
  });
});

describe("webgpu start (Dawn through the optional `webgpu` package)", async () => {
  const { webgpuSkipReason } = await import("./testing/webgpu");
  const { checkWebgpuLimits, getWebgpuInfo, WEBGPU_LIMITS } = await import("./webgpu");
  const why = await webgpuSkipReason();

  it.skipIf(why !== null)(`starts with the adapter's maximum limits and records the adapter${why ? ` (skipped: ${why})` : ""}`, async () => {
    const before = tf.getBackend();
    await tf.setBackend("webgpu");
    try {
      const info = getWebgpuInfo();
      expect(info).not.toBeNull();
      expect(["vulkan", "metal", "d3d12", "opengles", "browser"]).toContain(info?.backendType);
      const device = (tf.backend() as unknown as { device: { limits: Record<string, number> } }).device;
      for (const name of WEBGPU_LIMITS) expect(info?.limits[name]).toBe(device.limits[name]);
      // The adapter's maximum, not WebGPU's 128 MiB / 256 MiB defaults, where the adapter offers more.
      expect(device.limits.maxBufferSize).toBeGreaterThanOrEqual(256 * 1024 * 1024);
      const y = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
      expect(Array.from(await y.data())).toEqual([11]);
    } finally {
      await tf.setBackend(before);
    }
  });

  it("an adapter below the needed limits is a BackendError naming the limit, the value needed and the adapter's", () => {
    const err = (() => {
      try {
        checkWebgpuLimits({ maxStorageBufferBindingSize: 1024, maxBufferSize: 1 << 30, maxStorageBuffersPerShaderStage: 4, maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupsPerDimension: 65535 });
      } catch (e) {
        return e as BackendError;
      }
    })();
    expect(err).toBeInstanceOf(BackendError);
    expect(err?.code).toBe("WEBGPU_LIMITS");
    expect(err?.message).toContain("maxStorageBufferBindingSize: needs 16777216, the adapter gives 1024");
    expect(err?.message).toContain("maxStorageBuffersPerShaderStage: needs 8, the adapter gives 4");
    expect(err?.message).not.toContain("maxBufferSize");
  });
});
