import path from "node:path";
import { fixturesDir, initBackend } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { describe, expect, it } from "vitest";
import { runParity } from "./run";

function fixture(): string {
  return path.join(fixturesDir(), "qwen2vl-tiny");
}
const FX = fixture();

describe("runParity", () => {
  it("derives the cases from the fixture; without model capabilities they are NOT RUN and the report fails", async () => {
    const r = await runParity(FX, { api: {}, cases: ["processor", "image_prompt", "greedy", "lora_image_prompt"] });
    expect(r.cases.processor.status).toBe("PASS");
    for (const c of ["image_prompt", "greedy", "lora_image_prompt"]) expect(r.cases[c].status).toBe("NOT RUN");
    // every output field of the case is listed, inputs are not
    expect(Object.keys(r.cases.image_prompt.fields)).toEqual(expect.arrayContaining(["logits_cols", "hidden_states", "vision.merger", "position_ids"]));
    expect(r.cases.image_prompt.fields.input_ids).toBeUndefined();
    expect(r.overall).toBe("FAIL");
    // the processor case: ids, masks exact and pixel_values from the PNGs within 1e-5
    const f = r.cases.processor.fields;
    expect(f["batch.input_ids"].max_abs_diff).toBe(0);
    expect(f["batch.attention_mask"].max_abs_diff).toBe(0);
    expect(f["batch.pixel_values"].max_abs_diff).toBeLessThanOrEqual(1e-5);
    expect(f["disc_100x80.resized_rgb_uint8"].max_abs_diff).toBe(0);
  });

  it("the whole fixture passes with the discovered model API (forward, vision, greedy, completion, LoRA cases)", async () => {
    await initBackend();
    const before = tf.memory().numTensors;
    const r = await runParity(FX);
    expect(tf.memory().numTensors).toBe(before);
    const expected = ["processor", "batch", "completion", "greedy", "image_prompt", "text_only", "lora_completion", "lora_image_prompt"];
    expect(Object.keys(r.cases).sort()).toEqual(expected.sort());
    for (const [name, c] of Object.entries(r.cases)) expect(c.status, `${name}: ${c.reason ?? ""}`).toBe("PASS");
    expect(r.overall).toBe("PASS");
    expect(r.cases.greedy.fields.generated_ids.max_abs_diff).toBe(0);
    expect(r.cases.lora_completion.fields.completion_logprobs.max_abs_diff).toBeLessThanOrEqual(1e-4);
    expect(r.cases.image_prompt.fields["vision.merger"].max_abs_diff).toBeLessThanOrEqual(1e-3);
  }, 300_000); // about 20 s on wasm, 135 s on the cpu backend
});
