import { RarlError } from "@rarl/core";

/** Bad LoRA configuration, or an adapter that does not fit the model (`details.problems` lists each mismatch). */
export class LoraError extends RarlError {}

/**
 * LoRA settings (PEFT `LoraConfig` subset). Field names follow PEFT's adapter_config.json.
 * The RARL paper fine-tunes Qwen2-VL-2B with r = 8, lora_alpha = 16.
 */
export interface LoraConfig {
  /** Rank of the update B·A. Default 8 (paper: 8). */
  r: number;
  /** Scaling numerator: the update is scaled by lora_alpha / r (or lora_alpha / sqrt(r) with use_rslora). Default 16 (paper: 16). */
  lora_alpha: number;
  /** Dropout probability on the adapter input while training (setLoraTraining(true)). Default 0.05. */
  lora_dropout: number;
  /**
   * Modules to adapt, PEFT's rule: a module matches when its path equals a name or ends with "." + name
   * (a single string is a regular expression matched against the whole path). Default
   * ["q_proj", "k_proj", "v_proj", "o_proj"]: the language model's attention projections. Vision-tower modules
   * (paths under "visual.") are opt-in: they only match names that start with "visual." (e.g. "visual.blocks.0.attn.qkv")
   * or a regular expression mentioning "visual".
   */
  target_modules: string[] | string;
  /** rsLoRA: scale by lora_alpha / sqrt(r) instead of lora_alpha / r. Default false. */
  use_rslora: boolean;
  /** Written to adapter_config.json (base_model_name_or_path). Default null. */
  base_model_name_or_path: string | null;
}

export const DEFAULT_LORA_CONFIG: Readonly<LoraConfig> = {
  r: 8,
  lora_alpha: 16,
  lora_dropout: 0.05,
  target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"],
  use_rslora: false,
  base_model_name_or_path: null,
};

/** Fills defaults and validates (r a positive integer, alpha > 0, 0 <= dropout < 1, non-empty targets). */
export function resolveLoraConfig(c: Partial<LoraConfig> = {}): LoraConfig {
  const cfg: LoraConfig = { ...DEFAULT_LORA_CONFIG, ...c } as LoraConfig;
  const bad = (field: string, what: string) => {
    throw new LoraError(`LoraConfig.${field}: ${what}`, { code: "LORA_BAD_CONFIG", details: { field } });
  };
  if (!Number.isInteger(cfg.r) || cfg.r <= 0) bad("r", `must be a positive integer, got ${cfg.r}`);
  if (!(typeof cfg.lora_alpha === "number" && cfg.lora_alpha > 0)) bad("lora_alpha", `must be > 0, got ${cfg.lora_alpha}`);
  if (!(cfg.lora_dropout >= 0 && cfg.lora_dropout < 1)) bad("lora_dropout", `must be in [0, 1), got ${cfg.lora_dropout}`);
  const t = cfg.target_modules;
  if (!(typeof t === "string" ? t.length > 0 : Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === "string" && x.length > 0))) {
    bad("target_modules", `must be a non-empty list of module names or a regex string, got ${JSON.stringify(t)}`);
  }
  return cfg;
}

/** The factor applied to B·A. Pure. */
export function loraScale(cfg: Pick<LoraConfig, "r" | "lora_alpha" | "use_rslora">): number {
  return cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
}

/** Whether module `path` (HF path, e.g. "model.layers.0.self_attn.q_proj") is targeted. Pure. */
export function matchesTarget(path: string, targets: string[] | string): boolean {
  const isVision = path.startsWith("visual.");
  if (typeof targets === "string") {
    if (isVision && !targets.includes("visual")) return false;
    return new RegExp(`^(?:${targets})$`).test(path);
  }
  return targets.some((t) => {
    if (isVision && !t.startsWith("visual.")) return false;
    return path === t || path.endsWith(`.${t}`);
  });
}

/** adapter_config.json content as PEFT (>= 0.10) writes it for a CAUSAL_LM LoRA, loadable by PEFT and vLLM. */
export function toPeftConfig(cfg: LoraConfig): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: cfg.base_model_name_or_path,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: cfg.lora_alpha,
    lora_dropout: cfg.lora_dropout,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    peft_type: "LORA",
    r: cfg.r,
    rank_pattern: {},
    revision: null,
    target_modules: cfg.target_modules,
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: cfg.use_rslora,
  };
}

/** Reads a PEFT adapter_config.json object; rejects what this implementation cannot honour. */
export function fromPeftConfig(j: any, file = "adapter_config.json"): LoraConfig {
  const bad = (field: string, what: string): never => {
    throw new LoraError(`${file}: ${field}: ${what}`, { code: "LORA_BAD_CONFIG", details: { file, field } });
  };
  if (typeof j !== "object" || j === null) bad("(root)", "expected a JSON object");
  if (j.peft_type !== undefined && j.peft_type !== "LORA") bad("peft_type", `only LORA is supported, got ${JSON.stringify(j.peft_type)}`);
  if (j.use_dora) bad("use_dora", "DoRA adapters are not supported");
  if (j.fan_in_fan_out) bad("fan_in_fan_out", "must be false for Qwen2-VL (nn.Linear weights)");
  if (j.bias !== undefined && j.bias !== "none") bad("bias", `only "none" is supported, got ${JSON.stringify(j.bias)}`);
  for (const k of ["rank_pattern", "alpha_pattern"]) {
    if (j[k] && typeof j[k] === "object" && Object.keys(j[k]).length > 0) bad(k, "per-module ranks/alphas are not supported");
  }
  if (Array.isArray(j.modules_to_save) && j.modules_to_save.length > 0) bad("modules_to_save", "fully trained extra modules are not supported");
  try {
    return resolveLoraConfig({
      r: j.r,
      lora_alpha: j.lora_alpha,
      lora_dropout: j.lora_dropout ?? 0,
      target_modules: j.target_modules,
      use_rslora: j.use_rslora ?? false,
      base_model_name_or_path: j.base_model_name_or_path ?? null,
    });
  } catch (e) {
    if (e instanceof LoraError) throw new LoraError(`${file}: ${e.message}`, { code: "LORA_BAD_CONFIG", details: { file, ...e.details }, cause: e });
    throw e;
  }
}
