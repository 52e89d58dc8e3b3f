import { initBackend } from "@rarl/core";
import { GRPO_DEFAULTS, GRPOTrainer, ToyPolicy } from "@rarl/grpo";

await initBackend();
const policy = new ToyPolicy({ vocab: 8 }); // a bigram LM with a LoRA adapter, implements Policy
const trainer = new GRPOTrainer({
  config: { ...GRPO_DEFAULTS, numGenerations: 8, maxCompletionLength: 6, learningRate: 0.05, maxSteps: 20, progress: false },
  policy,
  examples: [{ id: "a" }, { id: "b" }],
  buildPrompt: (e) => ({ id: e.id, ids: [e.id === "a" ? 0 : 1] }),
  // reward: the share of token 3 in the completion (async scorers are fine too)
  rewards: (items) => ({ three: items.map((it) => it.completionIds.filter((t) => t === 3).length / Math.max(1, it.completionIds.length)) }),
  runDir: process.argv[2] ?? "runs/toy",
});
const res = await trainer.train(); // runs/toy/metrics.jsonl, checkpoints/, adapter/
console.log(res);
