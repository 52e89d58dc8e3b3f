import fs from "node:fs";
import path from "node:path";
import { openSafetensors, type Rng, type TensorToWrite, writeFileAtomic, writeSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { areAdaptersEnabled, type Linear, setAdaptersEnabled } from "../nn/linear";
import { fromPeftConfig, type LoraConfig, LoraError, loraScale, matchesTarget, resolveLoraConfig, toPeftConfig } from "./config";

/** Anything with HF-named Linear layers (Qwen2VLForConditionalGeneration). */
export interface HasLinears {
  namedLinears(): Map<string, Linear>;
}

const adapters = new WeakMap<HasLinears, LoraAdapter>();

/** PEFT's key prefix in adapter_model.safetensors. */
const PEFT_PREFIX = "base_model.model.";

/**
 * PEFT's init for lora_A: kaiming_uniform_(a = sqrt(5)) on a [r, in] weight, i.e. U(-b, b) with
 * b = gain · sqrt(3 / fan_in), gain = sqrt(2 / (1 + a²)) = sqrt(1/3), so b = 1 / sqrt(in). Pure given the rng.
 */
export function kaimingUniformA(r: number, inFeatures: number, rng: Rng): Float32Array {
  const bound = 1 / Math.sqrt(inFeatures);
  const out = new Float32Array(r * inFeatures);
  for (let i = 0; i < out.length; i++) out[i] = (rng.random() * 2 - 1) * bound;
  return out;
}

/** LoRA adapters attached to a model's Linear layers (one adapter per model). */
export class LoraAdapter {
  private merged = false;
  private disposed = false;

  constructor(
    readonly model: HasLinears,
    readonly config: LoraConfig,
    /** Adapted modules by HF path, in namedLinears order. */
    readonly modules: Map<string, Linear>,
  ) {}

  /** The LoRA weights (A and B of every adapted module): the only variables to train. */
  trainableVariables(): tf.Variable[] {
    const vars: tf.Variable[] = [];
    for (const lin of this.modules.values()) {
      const s = lin.lora ?? this.detached.get(lin);
      if (s) vars.push(s.A, s.B);
    }
    return vars;
  }

  /** Slots held aside while merged. */
  private readonly detached = new Map<Linear, NonNullable<Linear["lora"]>>();

  /** Whether the update is folded into the base weights. */
  get isMerged(): boolean {
    return this.merged;
  }

  /**
   * Runs `fn` with every adapter switched off (the base model = reference policy; no second copy of the weights).
   * Works with sync and async `fn`. Not allowed while merged.
   */
  withAdapterDisabled<T>(fn: () => T): T {
    if (this.merged) throw new LoraError("cannot disable a merged adapter; unmerge() first", { code: "LORA_MERGED" });
    const prev = areAdaptersEnabled();
    setAdaptersEnabled(false);
    let res: T;
    try {
      res = fn();
    } catch (e) {
      setAdaptersEnabled(prev);
      throw e;
    }
    if (res instanceof Promise) return res.finally(() => setAdaptersEnabled(prev)) as T;
    setAdaptersEnabled(prev);
    return res;
  }

  /** W <- W + scale · B·A for every adapted module (the slots are held aside so the update is not applied twice). */
  merge(): void {
    this.check();
    if (this.merged) return;
    for (const lin of this.modules.values()) {
      const s = lin.lora!;
      lin.setWeight(tf.tidy(() => tf.add(lin.weight, tf.mul(tf.matMul(s.B, s.A), s.scale))) as tf.Tensor2D);
      this.detached.set(lin, s);
      lin.lora = null;
    }
    this.merged = true;
  }

  /** Reverses {@link merge}: W <- W - scale · B·A and re-attaches the slots. */
  unmerge(): void {
    this.check();
    if (!this.merged) return;
    for (const lin of this.modules.values()) {
      const s = this.detached.get(lin)!;
      lin.setWeight(tf.tidy(() => tf.sub(lin.weight, tf.mul(tf.matMul(s.B, s.A), s.scale))) as tf.Tensor2D);
      lin.lora = s;
    }
    this.detached.clear();
    this.merged = false;
  }

  /**
   * Writes the adapter in PEFT format: `adapter_model.safetensors` (F32, keys
   * `base_model.model.<module>.lora_A.weight` [r, in] / `.lora_B.weight` [out, r]) and `adapter_config.json`.
   */
  save(dir: string): void {
    this.check();
    fs.mkdirSync(dir, { recursive: true });
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, lin] of this.modules) {
      const s = lin.lora ?? this.detached.get(lin)!;
      tensors[`${PEFT_PREFIX}${name}.lora_A.weight`] = { dtype: "F32", shape: [...s.A.shape], data: s.A.dataSync() as Float32Array };
      tensors[`${PEFT_PREFIX}${name}.lora_B.weight`] = { dtype: "F32", shape: [...s.B.shape], data: s.B.dataSync() as Float32Array };
    }
    writeSafetensors(path.join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
    writeFileAtomic(path.join(dir, "adapter_config.json"), `${JSON.stringify(toPeftConfig(this.config), null, 2)}\n`);
  }

  /** Detaches the adapter from the model (unmerging first) and frees its variables. */
  remove(): void {
    if (this.disposed) return;
    if (this.merged) this.unmerge();
    for (const lin of this.modules.values()) {
      if (lin.lora) {
        lin.lora.A.dispose();
        lin.lora.B.dispose();
        lin.lora = null;
      }
    }
    this.disposed = true;
    if (adapters.get(this.model) === this) adapters.delete(this.model);
  }

  private check(): void {
    if (this.disposed) throw new LoraError("this adapter was removed", { code: "LORA_REMOVED" });
  }
}

/** The adapter attached to `model`, or null. */
export function getAdapter(model: HasLinears): LoraAdapter | null {
  return adapters.get(model) ?? null;
}

/** Removes the adapter attached to `model` (if any). */
export function removeLora(model: HasLinears): void {
  adapters.get(model)?.remove();
}

/** Adapter modules (HF paths) that `config` selects in `model`. */
export function loraTargets(model: HasLinears, config: Partial<LoraConfig> = {}): string[] {
  const cfg = resolveLoraConfig(config);
  return [...model.namedLinears().keys()].filter((n) => matchesTarget(n, cfg.target_modules));
}

/**
 * Attaches fresh LoRA adapters to every Linear that `config.target_modules` selects, with PEFT's init
 * (A ~ kaiming-uniform(a = sqrt 5) = U(±1/sqrt(in)), B = 0, so the model's output is unchanged).
 * Throws LoraError when nothing matches or an adapter is already attached.
 */
export function applyLora(model: HasLinears, config: Partial<LoraConfig>, rng: Rng): LoraAdapter {
  const cfg = resolveLoraConfig(config);
  if (adapters.has(model)) throw new LoraError("the model already has a LoRA adapter; remove() it first", { code: "LORA_ALREADY_ATTACHED" });
  const linears = model.namedLinears();
  const modules = new Map<string, Linear>();
  for (const [name, lin] of linears) if (matchesTarget(name, cfg.target_modules)) modules.set(name, lin);
  if (modules.size === 0) {
    throw new LoraError(`target_modules ${JSON.stringify(cfg.target_modules)} match no Linear of the model`, {
      code: "LORA_NO_TARGETS",
      details: { target_modules: cfg.target_modules },
    });
  }
  const scale = loraScale(cfg);
  for (const [name, lin] of modules) {
    const A = makeVariable(kaimingUniformA(cfg.r, lin.inFeatures, rng), [cfg.r, lin.inFeatures], `lora_A/${name}`);
    const B = makeVariable(new Float32Array(lin.outFeatures * cfg.r), [lin.outFeatures, cfg.r], `lora_B/${name}`);
    lin.lora = { A, B, scale, dropout: cfg.lora_dropout };
  }
  const adapter = new LoraAdapter(model, cfg, modules);
  adapters.set(model, adapter);
  return adapter;
}

let variableCounter = 0;
/** A trainable float32 variable holding `data` (the temporary initial tensor is freed). */
function makeVariable(data: Float32Array, shape: [number, number], name: string): tf.Variable {
  const init = tf.tensor2d(data, shape);
  const v = tf.variable(init, true, `${name}#${variableCounter++}`, "float32");
  init.dispose();
  return v;
}

/** Maps a PEFT key's module part to the HF hub path used by namedLinears (also the transformers >= 4.52 naming). */
export function peftModuleToHubPath(module: string): string {
  if (module.startsWith("model.language_model.")) return `model.${module.slice("model.language_model.".length)}`;
  if (module.startsWith("model.visual.")) return module.slice("model.".length);
  return module;
}

/**
 * Loads a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) onto `model`, replacing any
 * attached adapter. Accepts keys `base_model.model.model.layers.N...` (hub naming) and
 * `base_model.model.model.language_model.layers.N...` (transformers >= 4.52). Throws LoraError listing every key
 * whose module does not exist or whose shape does not fit.
 */
export function loadAdapter(model: HasLinears, dir: string): LoraAdapter {
  const cfgFile = path.join(dir, "adapter_config.json");
  const wFile = path.join(dir, "adapter_model.safetensors");
  for (const f of [cfgFile, wFile]) {
    if (!fs.existsSync(f)) throw new LoraError(`${f}: not found (expected a PEFT adapter folder)`, { code: "LORA_MISSING_FILE", details: { file: f } });
  }
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(cfgFile, "utf8"));
  } catch (e) {
    throw new LoraError(`${cfgFile}: not valid JSON: ${(e as Error).message}`, { code: "LORA_BAD_CONFIG", details: { file: cfgFile }, cause: e });
  }
  const cfg = fromPeftConfig(j, cfgFile);
  const src = openSafetensors(wFile);
  const linears = model.namedLinears();
  const problems: string[] = [];
  const pairs = new Map<string, { A?: string; B?: string }>();
  const re = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/;
  for (const key of src.keys()) {
    const m = re.exec(key);
    if (!m) {
      problems.push(`${key}: not a LoRA A/B weight`);
      continue;
    }
    const mod = peftModuleToHubPath(m[1]);
    const p = pairs.get(mod) ?? {};
    p[m[2] as "A" | "B"] = key;
    pairs.set(mod, p);
  }
  const loaded = new Map<string, { A: Float32Array; B: Float32Array; lin: Linear }>();
  for (const [mod, p] of pairs) {
    const lin = linears.get(mod);
    if (!lin) {
      problems.push(`${mod}: no such Linear in the model`);
      continue;
    }
    if (!p.A || !p.B) {
      problems.push(`${mod}: missing lora_${p.A ? "B" : "A"}.weight`);
      continue;
    }
    const ia = src.info(p.A);
    const ib = src.info(p.B);
    const wantA = [cfg.r, lin.inFeatures];
    const wantB = [lin.outFeatures, cfg.r];
    if (ia.shape.join() !== wantA.join()) problems.push(`${p.A}: shape [${ia.shape}] does not fit, expected [${wantA}]`);
    if (ib.shape.join() !== wantB.join()) problems.push(`${p.B}: shape [${ib.shape}] does not fit, expected [${wantB}]`);
    if (ia.shape.join() === wantA.join() && ib.shape.join() === wantB.join()) {
      loaded.set(mod, { A: src.read(p.A).data as Float32Array, B: src.read(p.B).data as Float32Array, lin });
    }
  }
  if (pairs.size === 0) problems.push("the file holds no LoRA weights");
  if (problems.length > 0) {
    throw new LoraError(`${dir}: adapter does not fit the model:\n  ${problems.join("\n  ")}`, { code: "LORA_MISMATCH", details: { dir, problems } });
  }
  removeLora(model);
  const scale = loraScale(cfg);
  const modules = new Map<string, Linear>();
  for (const [name, lin] of linears) {
    const w = loaded.get(name);
    if (!w) continue;
    const A = makeVariable(w.A, [cfg.r, lin.inFeatures], `lora_A/${name}`);
    const B = makeVariable(w.B, [lin.outFeatures, cfg.r], `lora_B/${name}`);
    lin.lora = { A, B, scale, dropout: cfg.lora_dropout };
    modules.set(name, lin);
  }
  const adapter = new LoraAdapter(model, cfg, modules);
  adapters.set(model, adapter);
  return adapter;
}

/** Saves the adapter attached to `model` in PEFT format (see {@link LoraAdapter.save}). */
export function saveAdapter(model: HasLinears, dir: string): void {
  const a = adapters.get(model);
  if (!a) throw new LoraError("the model has no LoRA adapter to save", { code: "LORA_NONE" });
  a.save(dir);
}
