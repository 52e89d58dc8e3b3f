export { demoModelConfig, type RandomCheckpointOptions, TOKENIZER_FILES, writeRandomCheckpoint } from "./checkpoint";
export { compactReasoning, compactSamplesFile, DemoDataError } from "./data";
export { summarizeDemo } from "./summary";
export { byteLevelAlphabet, configForTrimmedVocab, DemoVocabError, demoCorpus, type TrimmedTokenizer, trimTokenizer, writeDemoModel, writeTrimmedTokenizer } from "./vocab";
export { EXPERIMENT_SPLITS, type EvalSuiteOptions, evalSuite, type ExperimentAnswers, type ExperimentResults, formatExperimentTable, type JudgedAnswer, readExperimentAnswers, readHeadroom, summarizeExperiment } from "./experiment";
export { type BootstrapResult, clusters, hierarchicalBootstrap, meanSe, type VerdictInputs, verdict } from "./stats";
