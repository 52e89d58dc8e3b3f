import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { DATASET_FORMATS } from "@rarl/datasets";
import { GRPO_DEFAULTS, SFT_DEFAULTS } from "@rarl/grpo";
import { DEFAULT_LORA_CONFIG } from "@rarl/model";
import { BUILTIN_TEMPLATES, TRAINING_TEMPLATES } from "@rarl/prompts";
import { REWARD_CONFIG_SCHEMA } from "@rarl/rewards";
import { describe, expect, it } from "vitest";
import { ConfigError } from "./load";
import { applySetFlags, TRAIN_CONFIG_SCHEMA as S, validateTrainConfig } from "./train-schema";

const repo = fileURLToPath(new URL("../../../../", import.meta.url));
const SECTIONS = ["$schema", "model", "data", "prompts", "rewards", "out", "evalData", "generation"];

/** Field docs (`/** ... *\/ name:`) of one exported interface in a TypeScript source file. */
function documentedFields(file: string, iface: string): string[] {
  const src = fs.readFileSync(path.join(repo, file), "utf8");
  const start = src.indexOf(`export interface ${iface}`);
  expect(start, `${iface} in ${file}`).toBeGreaterThanOrEqual(0);
  const body = src.slice(src.indexOf("{", start) + 1, src.indexOf("\n}", start));
  return [...body.matchAll(/\*\/\s*(\w+)\??\s*:/g)].map((m) => m[1]);
}

/** The default the schema gives a trainer field for one trainer (its then/else branch wins over the top level). */
function schemaDefault(field: string, trainer: "grpo" | "sft"): unknown {
  const branch = trainer === "sft" ? S.then : S.else;
  const b = branch.properties?.[field];
  if (b && typeof b === "object" && "default" in b) return b.default;
  return S.properties[field]?.default;
}

describe("rarl.config.schema.json", () => {
  it("is what package.json ships and exports as ./schema.json (ESM and CJS)", async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repo, "packages/cli/package.json"), "utf8"));
    expect(pkg.files).toContain("schema");
    expect(pkg.exports["./schema.json"]).toEqual({ import: "./schema/rarl.config.schema.mjs", default: "./schema/rarl.config.schema.json" });
    const esm = await import(path.join(repo, "packages/cli/schema/rarl.config.schema.mjs"));
    expect(esm.default).toEqual(S);
    expect(esm.schema).toEqual(S);
    expect(JSON.parse(fs.readFileSync(path.join(repo, "packages/cli/schema/rarl.config.schema.json"), "utf8"))).toEqual(S);
  });

  it("has every trainer field with the defaults of GRPO_DEFAULTS / SFT_DEFAULTS, and nothing else", () => {
    for (const [trainer, defaults] of [
      ["grpo", GRPO_DEFAULTS],
      ["sft", SFT_DEFAULTS],
    ] as const) {
      for (const [k, v] of Object.entries(defaults)) {
        expect(S.properties[k], `schema field ${k}`).toBeDefined();
        if (k === "trainer") continue; // the discriminator: "grpo" by default, "sft" selects the then-branch
        expect(schemaDefault(k, trainer), `${trainer} default of ${k}`).toEqual(v);
      }
      // fields of the other trainer are forbidden in this trainer's branch
      const branch = trainer === "sft" ? S.then : S.else;
      for (const k of Object.keys(S.properties)) {
        if (SECTIONS.includes(k)) continue;
        if (!(k in defaults)) expect(branch.properties[k], `${k} is not a ${trainer} field`).toBe(false);
      }
    }
    const known = new Set([...Object.keys(GRPO_DEFAULTS), ...Object.keys(SFT_DEFAULTS), ...SECTIONS]);
    expect(Object.keys(S.properties).filter((k) => !known.has(k))).toEqual([]);
  });

  it("documents every field of the TS config interfaces, each with its default and the paper's value", () => {
    const trainerDocs = [
      ...documentedFields("packages/grpo/src/config.ts", "CommonTrainConfig"),
      ...documentedFields("packages/grpo/src/config.ts", "GRPOConfig"),
      ...documentedFields("packages/grpo/src/config.ts", "SFTConfig"),
    ];
    expect(trainerDocs.length).toBeGreaterThan(30);
    for (const f of trainerDocs) expect(S.properties[f], f).toBeDefined();
    for (const [k, p] of Object.entries<any>(S.properties)) {
      if (SECTIONS.includes(k) || k === "trainer") continue;
      expect(p.description, k).toMatch(/Default/);
      expect(p.description, k).toMatch(/Paper: /);
    }
    // every field of every section too (the schema's leaves): a description naming the default and the paper's value
    const walk = (props: Record<string, any>, at: string) => {
      for (const [k, p] of Object.entries(props)) {
        expect(p.description, `${at}${k}`).toMatch(/[Dd]efault|[Rr]equired/);
        expect(p.description, `${at}${k}`).toMatch(/Paper[ :(]/);
        if (p.properties) walk(p.properties, `${at}${k}.`);
        if (p.items?.properties) walk(p.items.properties, `${at}${k}[].`);
      }
    };
    walk(S.properties, "");
    for (const f of documentedFields("packages/grpo/src/run.ts", "TrainFileSections")) expect(S.properties[f], f).toBeDefined();
    for (const f of documentedFields("packages/grpo/src/qwen-policy.ts", "QwenLoraOptions")) expect(S.properties.model.properties.lora.properties[f], `lora.${f}`).toBeDefined();
    for (const f of [...documentedFields("packages/datasets/src/load.ts", "LoadOptions"), ...documentedFields("packages/datasets/src/pipeline.ts", "PipelineOptions")]) {
      if (f === "onSkip") continue; // a callback, not a config value
      expect(S.properties.data.properties[f], `data.${f}`).toBeDefined();
    }
    for (const f of documentedFields("packages/datasets/src/formats/generic.ts", "ColumnMapping")) expect(S.properties.data.properties.mapping.properties[f], `mapping.${f}`).toBeDefined();
    for (const f of documentedFields("packages/rewards/src/config.ts", "RewardConfig")) expect(S.properties.rewards.properties[f], `rewards.${f}`).toBeDefined();
  });

  it("agrees with the other packages' values (LoRA, formats, templates, rewards schema)", () => {
    const lora = S.properties.model.properties.lora.properties;
    expect(lora.r.default).toBe(DEFAULT_LORA_CONFIG.r);
    expect(lora.alpha.default).toBe(DEFAULT_LORA_CONFIG.lora_alpha);
    expect(lora.targetModules.default).toEqual(DEFAULT_LORA_CONFIG.target_modules);
    expect(lora.useRslora.default).toBe(DEFAULT_LORA_CONFIG.use_rslora);
    expect(S.properties.data.properties.format.enum).toEqual([...DATASET_FORMATS]);
    expect(S.properties.prompts.properties.templates.items.enum.sort()).toEqual(Object.keys(BUILTIN_TEMPLATES).sort());
    expect(S.properties.prompts.properties.templates.default).toEqual(TRAINING_TEMPLATES.map((t) => t.name));
    // the rewards section is REWARD_CONFIG_SCHEMA plus descriptions and defaults
    const strip = (s: any): any =>
      Array.isArray(s) ? s.map(strip) : s && typeof s === "object" ? Object.fromEntries(Object.entries(s).filter(([k]) => k !== "description" && k !== "default").map(([k, v]) => [k, strip(v)])) : s;
    const { type: _t, description: _d, ...rewards } = S.properties.rewards;
    const { type: _t2, ...ref } = REWARD_CONFIG_SCHEMA as any;
    expect(strip(rewards)).toEqual(strip(ref));
  });

  it("accepts the example configs of the repository", () => {
    const files = ["packages/grpo/examples/grpo-tiny.json", "packages/grpo/examples/sft-tiny.json", "examples/custom-reward/train.json"];
    for (const dir of ["examples/medical-rarl", "examples/cv-bench"]) {
      const abs = path.join(repo, dir);
      if (fs.existsSync(abs)) for (const f of fs.readdirSync(abs)) if (f.endsWith(".json") && f !== "package.json") files.push(path.join(dir, f));
    }
    for (const f of files) {
      const abs = path.join(repo, f);
      if (!fs.existsSync(abs)) continue;
      const c = JSON.parse(fs.readFileSync(abs, "utf8"));
      if (!c.model) continue; // rewards-only files
      expect(() => validateTrainConfig(c, f), f).not.toThrow();
    }
  });

  it("rejects unknown and mistyped keys with the path and a suggestion", () => {
    const base = { model: { type: "toy" }, data: { format: "rarl", path: "x.jsonl" }, rewards: { rewards: [{ use: "format" }] } };
    const err = (c: unknown) => {
      try {
        validateTrainConfig(c, "cfg.json");
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error("expected a ConfigError");
    };
    expect(err({ ...base, betta: 0.1 })).toMatch(/cfg\.json: unknown field "betta" \(did you mean "beta"\?\)/);
    expect(err({ ...base, numGenerations: 8.5 })).toMatch(/numGenerations must be integer/);
    expect(err({ ...base, model: { type: "qwen2vl", path: "m", lora: { alpah: 4 } } })).toMatch(/unknown field "model\.lora\.alpah" \(did you mean "alpha"\?\)/);
    expect(err({ ...base, data: { format: "slak", path: "x" } })).toMatch(/data\.format must be one of .*\(did you mean "slake"\?\)/);
    expect(err({ ...base, trainer: "sft", epsilon: 0.2 })).toMatch(/unknown field "epsilon"/);
    expect(err({ ...base, rewards: undefined })).toMatch(/required property 'rewards'/);
    expect(err({ ...base, rewards: { rewards: [{ use: "format", wieght: 2 }] } })).toMatch(/unknown field "rewards\.rewards\.0\.wieght" \(did you mean "weight"\?\)/);
    // validation leaves the config as written (the trainer fills defaults)
    const ok = structuredClone(base);
    validateTrainConfig(ok);
    expect(ok).toEqual(base);
  });

  it("applies --set overrides, with grpo./sft. prefixes naming the trainer's top-level fields", () => {
    const c: Record<string, any> = { trainer: "grpo", model: { type: "toy" } };
    applySetFlags(c, ["grpo.beta=0.02", "model.lora.r=16", "numGenerations=4", "out=runs/x"]);
    expect(c).toEqual({ trainer: "grpo", model: { type: "toy", lora: { r: 16 } }, beta: 0.02, numGenerations: 4, out: "runs/x" });
    expect(() => applySetFlags(c, ["sft.batchSize=2"])).toThrow(/"sft\." fields do not apply to trainer "grpo"/);
    expect(() => applySetFlags(c, ["beta"])).toThrow(/expected key=value/);
  });
});
