export { demoModelConfig, type RandomCheckpointOptions, TOKENIZER_FILES, writeRandomCheckpoint } from "./checkpoint";
export { compactReasoning, compactSamplesFile, DemoDataError } from "./data";
export { type EvalSuiteOptions, EXPERIMENT_SPLITS, type ExperimentAnswers, type ExperimentResults, evalSuite, formatExperimentTable, type JudgedAnswer, readExperimentAnswers, readHeadroom, summarizeExperiment } from "./experiment";
export { type BootstrapResult, clusters, hierarchicalBootstrap, meanSe, type VerdictInputs, verdict } from "./stats";
export { summarizeDemo } from "./summary";
export { byteLevelAlphabet, configForTrimmedVocab, DemoVocabError, demoCorpus, type TrimmedTokenizer, trimTokenizer, writeDemoModel, writeTrimmedTokenizer } from "./vocab";
