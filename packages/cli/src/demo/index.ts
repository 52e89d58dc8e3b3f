export { demoModelConfig, type RandomCheckpointOptions, TOKENIZER_FILES, writeRandomCheckpoint } from "./checkpoint";
export { compactReasoning, compactSamplesFile, DemoDataError } from "./data";
export { summarizeDemo } from "./summary";
export { byteLevelAlphabet, configForTrimmedVocab, DemoVocabError, demoCorpus, type TrimmedTokenizer, trimTokenizer, writeDemoModel, writeTrimmedTokenizer } from "./vocab";
