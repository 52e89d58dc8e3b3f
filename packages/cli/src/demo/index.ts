export { demoModelConfig, type RandomCheckpointOptions, TOKENIZER_FILES, writeRandomCheckpoint } from "./checkpoint";
export { compactReasoning, compactSamplesFile } from "./data";
export { makeLanguageModelTrainable, qwen2vlPolicyFactory, registerDemoPolicies, sampleImage, saveFullModel } from "./policies";
export { summarizeDemo } from "./summary";
