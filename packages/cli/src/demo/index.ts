export { demoModelConfig, type RandomCheckpointOptions, TOKENIZER_FILES, writeRandomCheckpoint } from "./checkpoint";
export { compactReasoning, compactSamplesFile } from "./data";
export { summarizeDemo } from "./summary";
