import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadQwen2VLConfig, ModelConfigError, parseQwen2VLConfig } from "./config";
import { tinyFixtureDir } from "./parity_fixture";

const raw = JSON.parse(fs.readFileSync(path.join(tinyFixtureDir(), "config.json"), "utf8"));

describe("Qwen2VLConfig", () => {
  it("parses the fixture's hub config.json", () => {
    const c = loadQwen2VLConfig(tinyFixtureDir());
    expect(c).toMatchObject({
      vocabSize: 151936,
      hiddenSize: 64,
      intermediateSize: 128,
      numHiddenLayers: 2,
      numAttentionHeads: 4,
      numKeyValueHeads: 2,
      headDim: 16,
      rmsNormEps: 1e-6,
      ropeTheta: 1e6,
      mropeSection: [2, 3, 3],
      tieWordEmbeddings: true,
      imageTokenId: 151655,
      visionStartTokenId: 151652,
      maxPositionEmbeddings: 32768,
    });
    expect(c.visionConfig).toEqual({
      depth: 2,
      embedDim: 32,
      hiddenSize: 64,
      hiddenAct: "quick_gelu",
      mlpRatio: 4,
      numHeads: 2,
      inChannels: 3,
      patchSize: 14,
      spatialMergeSize: 2,
      temporalPatchSize: 2,
    });
  });
  it("accepts vision_config.in_channels (transformers) as well as in_chans (hub)", () => {
    const { in_chans: _drop, ...vc } = raw.vision_config;
    expect(parseQwen2VLConfig({ ...raw, vision_config: { ...vc, in_channels: 1 } }).visionConfig.inChannels).toBe(1);
    expect(parseQwen2VLConfig({ ...raw, vision_config: { ...vc, in_chans: 4 } }).visionConfig.inChannels).toBe(4);
    expect(parseQwen2VLConfig({ ...raw, vision_config: vc }).visionConfig.inChannels).toBe(3);
  });
  it("rejects another model_type with a typed error naming the file", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-cfg-"));
    const file = path.join(dir, "config.json");
    fs.writeFileSync(file, JSON.stringify({ ...raw, model_type: "qwen2_5_vl" }));
    try {
      expect(() => loadQwen2VLConfig(dir)).toThrow(ModelConfigError);
      expect(() => loadQwen2VLConfig(dir)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: unsupported model_type "qwen2_5_vl"`));
      fs.writeFileSync(file, "{ not json");
      expect(() => loadQwen2VLConfig(dir)).toThrow(/not valid JSON/);
      fs.rmSync(file);
      expect(() => loadQwen2VLConfig(dir)).toThrow(/cannot read config/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it("rejects inconsistent fields", () => {
    expect(() => parseQwen2VLConfig({ ...raw, rope_scaling: { type: "mrope", mrope_section: [2, 3, 4] } })).toThrow(/must sum to head_dim\/2 = 8/);
    expect(() => parseQwen2VLConfig({ ...raw, num_key_value_heads: 3 })).toThrow(/not a multiple of num_key_value_heads/);
    expect(() => parseQwen2VLConfig({ ...raw, hidden_size: "64" })).toThrow(/"hidden_size" must be a positive integer/);
    expect(() => parseQwen2VLConfig({ ...raw, vision_config: { ...raw.vision_config, hidden_size: 32 } })).toThrow(/vision_config.hidden_size/);
  });
  it("reads a nested text_config (transformers >= 4.52 layout)", () => {
    const nested = { model_type: "qwen2_vl", vision_config: raw.vision_config, text_config: { ...raw, vision_config: undefined, model_type: "qwen2_vl_text" } };
    const c = parseQwen2VLConfig(nested);
    expect(c.hiddenSize).toBe(64);
    expect(c.mropeSection).toEqual([2, 3, 3]);
  });
});
