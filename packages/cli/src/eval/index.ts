export { type AnswerOptions, checkModelPaths, EvalInputError, type EvalModel, generateAnswers, loadEvalModel, parseDataSpec, type RunEvalOptions, runEval, splitThinkAnswer } from "./run-eval";
