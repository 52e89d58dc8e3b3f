import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { BUILTIN_REWARDS } from "./builtins";
import { NoEncoderError, RewardConfigError, RewardPluginError } from "./errors";
import type { RewardContext, RewardDefinition, RewardSample } from "./types";

/**
 * Declares a reward (for plugins and user code). Checks the shape and returns a frozen copy.
 * A plugin package exports it as its default export (or as `reward`).
 */
export function defineReward(def: RewardDefinition): RewardDefinition {
  if (!def || typeof def !== "object") throw new RewardConfigError("defineReward: expected {name, fn, async?}", { code: "REWARD_INVALID" });
  if (typeof def.name !== "string" || def.name.length === 0)
    throw new RewardConfigError("defineReward: `name` must be a non-empty string", { code: "REWARD_INVALID" });
  if (typeof def.fn !== "function")
    throw new RewardConfigError(`defineReward "${def.name}": \`fn\` must be a function`, { code: "REWARD_INVALID", details: { plugin: def.name } });
  if (def.async !== undefined && typeof def.async !== "boolean")
    throw new RewardConfigError(`defineReward "${def.name}": \`async\` must be a boolean`, { code: "REWARD_INVALID", details: { plugin: def.name } });
  return Object.freeze({ ...def });
}

/**
 * Runs one reward on one completion and checks the result: a throw, a non-number, NaN or a value outside [0, 1]
 * becomes a RewardPluginError naming the reward and the sample id (NoEncoderError and RewardConfigError, which
 * report a missing scorer or tokenizer in the context, pass through unchanged).
 */
export async function runReward(def: RewardDefinition, completion: string, sample: RewardSample, ctx: RewardContext): Promise<number> {
  let v: unknown;
  try {
    v = await def.fn(completion, sample, ctx);
  } catch (e) {
    // Configuration problems (no encoder, no tokenizer) are not the plugin's fault: they pass through unchanged.
    if (e instanceof RewardPluginError || e instanceof NoEncoderError || e instanceof RewardConfigError) throw e;
    throw new RewardPluginError(`reward "${def.name}" threw on sample "${sample.id}": ${(e as Error)?.message ?? e}`, {
      code: "REWARD_THREW",
      details: { plugin: def.name, sample: sample.id },
      cause: e,
    });
  }
  if (typeof v !== "number" || Number.isNaN(v))
    throw new RewardPluginError(`reward "${def.name}" returned ${typeof v === "number" ? "NaN" : `a ${v === null ? "null" : typeof v}`} on sample "${sample.id}" (expected a number in [0, 1])`, {
      code: "REWARD_NOT_A_NUMBER",
      details: { plugin: def.name, sample: sample.id },
    });
  if (v < 0 || v > 1)
    throw new RewardPluginError(`reward "${def.name}" returned ${v} on sample "${sample.id}" (expected a number in [0, 1])`, {
      code: "REWARD_OUT_OF_RANGE",
      details: { plugin: def.name, sample: sample.id, value: v },
    });
  return v;
}

/** Rewards by name. Starts with the built-ins (format, length, accuracy, reasoning) unless `builtins: false`. */
export class RewardRegistry {
  private readonly map = new Map<string, RewardDefinition>();

  constructor(opts: { builtins?: boolean } = {}) {
    if (opts.builtins !== false) for (const r of BUILTIN_REWARDS) this.map.set(r.name, r);
  }

  /** Adds a reward; a second reward with the same name is an error unless `replace`. */
  register(def: RewardDefinition, opts: { replace?: boolean } = {}): this {
    const d = defineReward(def);
    if (this.map.has(d.name) && !opts.replace)
      throw new RewardConfigError(`reward "${d.name}" is already registered`, { code: "REWARD_DUPLICATE", details: { plugin: d.name } });
    this.map.set(d.name, d);
    return this;
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  names(): string[] {
    return [...this.map.keys()];
  }

  /** The reward registered under `name`; RewardConfigError listing the known names otherwise. */
  get(name: string): RewardDefinition {
    const d = this.map.get(name);
    if (!d)
      throw new RewardConfigError(`unknown reward "${name}" (known: ${this.names().join(", ")}; a package name or a path loads a plugin)`, {
        code: "REWARD_UNKNOWN",
        details: { plugin: name },
      });
    return d;
  }

  /**
   * Resolves a config's `use`: a registered name, else a plugin loaded with dynamic import — a package name resolved
   * from `fromDir` (the config's directory), then from the current directory, or a relative/absolute file path
   * (relative to `fromDir`). The module's default export (or `reward` export) must be a reward definition; it is
   * registered under its own name.
   */
  async resolve(use: string, fromDir: string = process.cwd()): Promise<RewardDefinition> {
    if (this.map.has(use)) return this.map.get(use) as RewardDefinition;
    const mod = await importPlugin(use, fromDir);
    const value = (mod as any)?.default ?? (mod as any)?.reward;
    const cand = value && typeof value === "object" && "default" in value && !("fn" in value) ? value.default : value;
    let def: RewardDefinition;
    try {
      def = defineReward(cand);
    } catch (e) {
      throw new RewardConfigError(`plugin "${use}": its default export is not a reward definition {name, fn, async?}: ${(e as Error).message}`, {
        code: "REWARD_PLUGIN_INVALID",
        details: { plugin: use },
        cause: e,
      });
    }
    if (!this.map.has(def.name)) this.map.set(def.name, def);
    this.map.set(use, def);
    return def;
  }
}

async function importPlugin(spec: string, fromDir: string): Promise<unknown> {
  const isPath = spec.startsWith(".") || path.isAbsolute(spec);
  let resolved: string | undefined;
  const errors: string[] = [];
  if (isPath) resolved = path.resolve(fromDir, spec);
  else {
    for (const dir of [fromDir, process.cwd()]) {
      try {
        resolved = createRequire(path.join(path.resolve(dir), "__rarl_resolve__.js")).resolve(spec);
        break;
      } catch (e) {
        errors.push(`${dir}: ${(e as Error).message.split("\n")[0]}`);
      }
    }
  }
  if (!resolved)
    throw new RewardConfigError(`reward plugin "${spec}" not found (looked from ${errors.join("; ")}); install it or check the name`, {
      code: "REWARD_PLUGIN_NOT_FOUND",
      details: { plugin: spec },
    });
  try {
    return await import(pathToFileURL(resolved).href);
  } catch (e) {
    throw new RewardConfigError(`reward plugin "${spec}" (${resolved}) failed to load: ${(e as Error).message}`, {
      code: "REWARD_PLUGIN_LOAD",
      details: { plugin: spec, file: resolved },
      cause: e,
    });
  }
}
