import fs from "node:fs";
import path from "node:path";
import schemaJson from "../../schema/rarl.config.schema.json";
import { type BlameFn, ConfigError, parseConfigText, parseOverride, setPath, validateConfig } from "./load";

/**
 * The JSON Schema of a `rarl train` config (shipped as @rarl/cli/schema.json, i.e. schema/rarl.config.schema.json).
 * Trainer fields sit at the top level (TRL names in camelCase, see GRPOConfig/SFTConfig in @rarl/grpo), beside the
 * `model`, `data`, `prompts`, `rewards` sections and `out`. Every field's description names its default and the
 * paper's value; a test keeps the defaults equal to GRPO_DEFAULTS / SFT_DEFAULTS and the other packages' docs.
 */
export const TRAIN_CONFIG_SCHEMA: Record<string, any> = schemaJson;

/** The parsed config as the trainer reads it (validated; defaults are filled later by @rarl/grpo). */
export type TrainFileConfig = Record<string, unknown> & {
  trainer?: "grpo" | "sft";
  model: { type: "qwen2vl" | "toy"; path?: string; [k: string]: unknown };
  data: { format: string; path: string; root?: string; split?: string; limit?: number; [k: string]: unknown };
  rewards?: string | Record<string, unknown>;
  out?: string;
  evalData?: EvalDataEntry[];
};

/** One evaluation set of an experiment config (`evalData`): checked by --dry-run, ignored by training. */
export interface EvalDataEntry {
  name: string;
  format: string;
  path: string;
  split?: string;
  root?: string;
  imageDir?: string;
  languages?: string[] | "all";
  limit?: number;
}

/** The config as @rarl/grpo's runTrain takes it: without the sections only the CLI reads (`evalData`, `$schema`). */
export function trainerInput(config: TrainFileConfig): Record<string, unknown> {
  const { evalData: _evalData, $schema: _schema, ...rest } = config;
  return rest;
}

/**
 * Validates a parsed train config against the shipped schema without changing it (defaults stay with the trainer).
 * Unknown or mistyped keys throw a ConfigError whose message names the path and suggests the closest field.
 */
export function validateTrainConfig(config: unknown, file = "config", blame?: BlameFn): TrainFileConfig {
  validateConfig(structuredClone(config), TRAIN_CONFIG_SCHEMA, file, blame);
  return config as TrainFileConfig;
}

/**
 * Turns `--set key=value` flags into dotted overrides. The trainer fields live at the top level of the file, so
 * `grpo.beta=0.02` / `sft.batchSize=4` are accepted as aliases of `beta` / `batchSize` (the prefix must match the
 * config's trainer). Returns the dotted key each flag set (without the alias prefix) and its flag text, in order.
 */
export function applySetFlags(config: Record<string, unknown>, sets: string[] = []): Array<{ key: string; expr: string }> {
  const applied: Array<{ key: string; expr: string }> = [];
  for (const expr of sets) {
    let [key, value] = parseOverride(expr);
    const m = /^(grpo|sft)\.(.+)$/.exec(key);
    if (m) {
      const trainer = (config.trainer as string | undefined) ?? "grpo";
      if (m[1] !== trainer) throw new ConfigError(`--set ${expr}: "${m[1]}." fields do not apply to trainer "${trainer}"`, { code: "CONFIG_INVALID", details: { field: key } });
      key = m[2];
    }
    if (key === "$schema") continue;
    setPath(config, key, value);
    applied.push({ key, expr });
  }
  return applied;
}

/**
 * Blames a config error on the `--set` flag that set the field (the last one wins, as in applySetFlags) when the
 * error's path is that field or lies under it, or (unknown fields) when the flag created the unknown object on its
 * way (`--set model.lora.r=8` with a toy model); otherwise on the file.
 */
export function blameSetFlags(applied: Array<{ key: string; expr: string }>): BlameFn {
  return (dotted, kind) => {
    for (let i = applied.length - 1; i >= 0; i--) {
      const { key, expr } = applied[i];
      if (dotted === key || dotted.startsWith(`${key}.`) || (kind === "unknown-field" && key.startsWith(`${dotted}.`))) return `--set ${expr}`;
    }
    return undefined;
  };
}

/**
 * Reads a train config (JSON or YAML), applies the CLI's `--set` overrides and validates it. Cheap: no tfjs, no
 * model code, so a bad config fails in well under a second.
 */
export function loadTrainConfig(file: string, sets: string[] = []): { config: TrainFileConfig; configDir: string; file: string } {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config ${abs}: ${(err as Error).message}`, { code: "CONFIG_IO", details: { file: abs }, cause: err });
  }
  const data = parseConfigText(text, abs);
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigError(`${abs}: the config must be an object at the top level`, { code: "CONFIG_INVALID", details: { file: abs } });
  }
  const applied = applySetFlags(data as Record<string, unknown>, sets);
  const config = validateTrainConfig(data, abs, blameSetFlags(applied));
  delete (config as Record<string, unknown>).$schema;
  return { config, configDir: path.dirname(abs), file: abs };
}

/** One path a config refers to, resolved, with the field that names it. */
export interface ConfigPath {
  field: string;
  path: string;
  kind: "file" | "dir" | "any";
}

/** Every file or folder a train config names (data, model, rewards file, tokenizer, encoder), resolved. */
export function configPaths(config: TrainFileConfig, configDir: string, opts: { evalData?: boolean } = {}): ConfigPath[] {
  const out: ConfigPath[] = [{ field: "data.path", path: path.resolve(configDir, config.data.path), kind: "any" }];
  if (config.data.root) out.push({ field: "data.root", path: path.resolve(configDir, config.data.root), kind: "dir" });
  if (opts.evalData) for (const [i, e] of (config.evalData ?? []).entries()) out.push({ field: `evalData[${i}].path (${e.name})`, path: path.resolve(configDir, e.path), kind: "any" });
  if (config.model.type === "qwen2vl" && config.model.path) out.push({ field: "model.path", path: path.resolve(configDir, config.model.path), kind: "dir" });
  let rewards = config.rewards as Record<string, unknown> | string | undefined;
  let rewardsDir = configDir;
  if (typeof rewards === "string") {
    const f = path.resolve(configDir, rewards);
    out.push({ field: "rewards", path: f, kind: "file" });
    rewardsDir = path.dirname(f);
    try {
      rewards = JSON.parse(fs.readFileSync(f, "utf8")) as Record<string, unknown>;
    } catch {
      rewards = undefined; // reported by the existence check or by the rewards loader
    }
  }
  if (rewards && typeof rewards === "object") {
    if (typeof rewards.tokenizer === "string") out.push({ field: "rewards.tokenizer", path: path.resolve(rewardsDir, rewards.tokenizer), kind: "file" });
    if (typeof rewards.encoder === "string") out.push({ field: "rewards.encoder", path: path.resolve(rewardsDir, rewards.encoder), kind: "dir" });
  }
  return out;
}

/** Fails (ConfigError naming the field and the file) when a path the config names does not exist (`evalData` too with `opts.evalData`). */
export function checkConfigPaths(config: TrainFileConfig, configDir: string, opts: { evalData?: boolean } = {}): void {
  const problems: string[] = [];
  for (const p of configPaths(config, configDir, opts)) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p.path);
    } catch {
      problems.push(`${p.field}: ${p.path} does not exist`);
      continue;
    }
    if (p.kind === "dir" && !st.isDirectory()) problems.push(`${p.field}: ${p.path} is not a folder`);
    if (p.kind === "file" && !st.isFile()) problems.push(`${p.field}: ${p.path} is not a file`);
  }
  if (problems.length) throw new ConfigError(`missing paths in the config:\n  ${problems.join("\n  ")}`, { code: "CONFIG_MISSING_PATH", details: { errors: problems } });
}
