import "@tensorflow/tfjs-backend-cpu";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadQwen2VL } from "./loading";
import type { Qwen2VLForConditionalGeneration } from "./model";
import { openReference, runCase, tinyFixtureDir } from "./parity_fixture";

// The same parity checks on the cpu backend (pure-JS kernels, ~25x slower than wasm): image_prompt (every vision
// code path) and batch (left padding, two images), which together cover every code path of text_only too.
let model: Qwen2VLForConditionalGeneration;
const ref = openReference();

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
  model = (await loadQwen2VL(tinyFixtureDir(), { loadProcessor: false })).model;
});
afterAll(() => model?.dispose());

describe("Qwen2-VL forward parity on the cpu backend", () => {
  for (const name of ["image_prompt", "batch"]) {
    it(name, () => {
      expect(tf.getBackend()).toBe("cpu");
      const d = runCase(model, ref, name);
      expect(d.position_ids).toBe(0);
      expect(d.rope_deltas).toBe(0);
      expect(d.top_ids).toBe(0);
      expect(d.hidden_states).toBeLessThan(1e-3);
      for (const f of ["logits_cols", "logsumexp", "top_vals", "logits_last"]) expect(d[f], f).toBeLessThan(1e-4);
      for (const [k, v] of Object.entries(d)) if (k.startsWith("vision.")) expect(v, k).toBeLessThan(1e-4);
    });
  }
});
