export { DEFAULT_LORA_CONFIG, fromPeftConfig, type LoraConfig, LoraError, loraScale, matchesTarget, resolveLoraConfig, toPeftConfig } from "./config";
export {
  applyLora,
  getAdapter,
  type HasLinears,
  kaimingUniformA,
  LoraAdapter,
  loadAdapter,
  loraTargets,
  peftModuleToHubPath,
  removeLora,
  saveAdapter,
} from "./lora";
