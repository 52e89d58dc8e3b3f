/**
 * Side-effect module: registers the demo's `qwen2vl` policy wiring (full SFT of every language-model weight) with
 * @rarl/grpo's runTrain. The demo preloads it for `rarl train` (`node --import tsx --import <this file> bin.ts train`)
 * because @rarl/grpo's own `qwen2vl` factory supports LoRA only (see /work/bugs/grpo-full-finetune.md).
 */
import { registerDemoPolicies } from "./policies";

registerDemoPolicies();
