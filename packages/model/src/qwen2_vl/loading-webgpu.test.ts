/**
 * Loading on webgpu when the model does not fit: the up-front GPU memory budget check (option or
 * RARL_GPU_MEMORY_GIB) and a weight buffer the device refuses. Each is a GpuMemoryError naming the tensor, the
 * bytes asked for and the limit, with nothing left allocated.
 */
import { GpuMemoryError, webgpuDeviceFault, webgpuSkipReason } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "./loading";
import { tinyFixtureDir } from "./parity_fixture";

const why = await webgpuSkipReason();

const EMBED_BYTES = 151936 * 64 * 4; // the tiny fixture's embed_tokens, the first tensor uploaded

async function loadError(opts: Parameters<typeof loadQwen2VL>[1]): Promise<GpuMemoryError | null> {
  return loadQwen2VL(tinyFixtureDir(), { loadProcessor: false, ...opts }).then(
    ({ model }) => {
      model.dispose();
      return null;
    },
    (e) => e as GpuMemoryError,
  );
}

describe.skipIf(why !== null)(`loadQwen2VL on webgpu: a model that does not fit${why ? ` (skipped: ${why})` : ""}`, () => {
  let before = "";
  beforeAll(async () => {
    before = tf.getBackend();
    await tf.setBackend("webgpu");
  });
  afterAll(async () => {
    if (before) await tf.setBackend(before);
  });

  it("weights + margin above the budget: GPU_MODEL_TOO_BIG names the first tensor past it, its bytes and the budget, before any upload", async () => {
    const n = tf.memory().numTensors;
    const err = await loadError({ gpuMemoryBytes: EMBED_BYTES + 100, gpuMemoryMarginBytes: 0 });
    expect(err).toBeInstanceOf(GpuMemoryError);
    expect(err?.code).toBe("GPU_MODEL_TOO_BIG");
    expect(err?.details).toMatchObject({ tensor: "model.layers.0.input_layernorm.weight", bytes: 256, reached: EMBED_BYTES + 256, limit: EMBED_BYTES + 100, margin: 0, source: "option" });
    expect(err?.message).toMatch(/model\.safetensors: the model does not fit in GPU memory: .* the first tensor past it is "model\.layers\.0\.input_layernorm\.weight" \(256 bytes/);
    expect(tf.memory().numTensors).toBe(n);
  });

  it("RARL_GPU_MEMORY_GIB sets the budget (with the default 1 GiB margin) and the message says so; a budget with room loads", async () => {
    const n = tf.memory().numTensors;
    const prev = process.env.RARL_GPU_MEMORY_GIB;
    try {
      process.env.RARL_GPU_MEMORY_GIB = "1.01";
      const err = await loadError({});
      expect(err?.code).toBe("GPU_MODEL_TOO_BIG");
      expect(err?.details).toMatchObject({ tensor: "model.embed_tokens.weight", bytes: EMBED_BYTES, margin: 2 ** 30, source: "RARL_GPU_MEMORY_GIB=1.01" });
      expect(err?.message).toMatch(/above the budget of \d+ bytes \(1\.01 GiB\) \(RARL_GPU_MEMORY_GIB=1\.01\)/);
      process.env.RARL_GPU_MEMORY_GIB = "1.1";
      expect(await loadError({})).toBeNull();
    } finally {
      if (prev === undefined) delete process.env.RARL_GPU_MEMORY_GIB;
      else process.env.RARL_GPU_MEMORY_GIB = prev;
    }
    expect(tf.memory().numTensors).toBe(n);
  });

  it("a weight buffer the device refuses: GpuMemoryError names the hub tensor, its bytes and maxBufferSize; the model is disposed", async () => {
    const n = tf.memory().numTensors;
    const b = tf.backend() as unknown as {
      uploadToGPU(dataId: object): void;
      tensorMap: { get(id: object): { shape: number[] } };
      device: { createBuffer(d: { size: number; usage: number }): { destroy(): void }; limits: Record<string, number> };
    };
    const upload = b.uploadToGPU;
    const limit = b.device.limits.maxBufferSize;
    try {
      // When visual.patch_embed.proj.weight (the one [32, 1176] weight) is uploaded, a buffer of maxBufferSize + 4
      // bytes is asked for too: Dawn's real validation error inside that weight's error scopes.
      b.uploadToGPU = function (this: typeof b, dataId: object) {
        const shape = this.tensorMap.get(dataId).shape;
        if (shape.join() === "32,1176") this.device.createBuffer({ size: limit + 4, usage: 0x80 /* STORAGE */ }).destroy();
        upload.call(this, dataId);
      };
      const err = await loadError({});
      expect(err).toBeInstanceOf(GpuMemoryError);
      expect(err?.code).toBe("WEBGPU_UPLOAD_VALIDATION");
      expect(err?.details).toMatchObject({ tensor: "visual.patch_embed.proj.weight", bytes: 32 * 1176 * 4, limit });
      expect(err?.message).toMatch(/uploading "visual\.patch_embed\.proj\.weight" \(150528 bytes\) failed with GPUValidationError: Buffer size \(\d+\) exceeds the max buffer size limit/);
    } finally {
      b.uploadToGPU = upload;
    }
    expect(webgpuDeviceFault()).toBeNull();
    expect(tf.memory().numTensors).toBe(n);
  });
});
