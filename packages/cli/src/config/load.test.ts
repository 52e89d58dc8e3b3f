import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, editDistance, loadConfig, parseOverride, suggest, validateConfig } from "./load";

const schema = {
  type: "object",
  additionalProperties: false,
  properties: {
    trainer: { enum: ["grpo", "sft"] },
    grpo: {
      type: "object",
      additionalProperties: false,
      properties: { beta: { type: "number", default: 0.04 }, numGenerations: { type: "integer", default: 4 } },
      default: {},
    },
  },
  required: ["trainer"],
};

describe("config loading", () => {
  it("computes edit distances and suggestions", () => {
    expect(editDistance("kitten", "sitting")).toBe(3);
    expect(suggest("numGeneration", ["beta", "numGenerations"])).toBe("numGenerations");
    expect(suggest("zzzzzz", ["beta"])).toBeUndefined();
  });
  it("fills defaults", () => {
    const c = validateConfig<any>({ trainer: "grpo" }, schema);
    expect(c.grpo).toEqual({ beta: 0.04, numGenerations: 4 });
  });
  it("names the path of an unknown key and suggests the right one", () => {
    expect(() => validateConfig({ trainer: "grpo", grpo: { bta: 1 } }, schema, "cfg.json")).toThrow(
      /cfg\.json: unknown field "grpo\.bta" \(did you mean "beta"\?\)/,
    );
    expect(() => validateConfig({ trainer: "ppo" }, schema, "cfg.json")).toThrow(/trainer must be one of \["grpo","sft"\]/);
    expect(() => validateConfig({ trainer: "sft", grpo: { beta: "x" } }, schema, "cfg.json")).toThrow(ConfigError);
  });
  it("reads YAML and JSON, and CLI overrides win", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "rarl-cfg-"));
    writeFileSync(path.join(dir, "a.yaml"), "trainer: grpo\ngrpo:\n  beta: 0.1\n");
    writeFileSync(path.join(dir, "b.json"), '{"trainer": "sft"}');
    const a = loadConfig<any>(path.join(dir, "a.yaml"), schema, { overrides: { "grpo.numGenerations": 8 } });
    expect(a.config.grpo).toEqual({ beta: 0.1, numGenerations: 8 });
    expect(loadConfig<any>(path.join(dir, "b.json"), schema).config.trainer).toBe("sft");
    writeFileSync(path.join(dir, "bad.json"), "{trainer:");
    expect(() => loadConfig(path.join(dir, "bad.json"), schema)).toThrow(/bad\.json: cannot parse JSON/);
    expect(() => loadConfig(path.join(dir, "missing.json"), schema)).toThrow(/cannot read config .*missing\.json/);
  });
  it("parses --set overrides", () => {
    expect(parseOverride("grpo.beta=0.5")).toEqual(["grpo.beta", 0.5]);
    expect(parseOverride("model=./dir")).toEqual(["model", "./dir"]);
    expect(() => parseOverride("nokey")).toThrow(ConfigError);
  });
});
