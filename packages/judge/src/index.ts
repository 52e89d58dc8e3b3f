export { JudgeError, JudgeInputError, JudgeConfigError } from "./errors";
export type { PredictionRecord, ResultRecord, Verdict, Usage, ChatMessage } from "./types";
export {
  APPENDIX_B_PROMPT,
  APPENDIX_B_PROMPT_VERSION,
  DEFAULT_PROMPT,
  PREDICTION_ONLY_NOTE,
  REPAIR_INSTRUCTION,
  type JudgePrompt,
  renderPrompt,
  renderRepair,
  hasReferenceReasoning,
} from "./prompt";
export { extractJson, parseVerdict, VERDICT_SCHEMA, PREDICTION_ONLY_SCHEMA, type ParseResult } from "./parse";
export { readPredictions, validatePredictions, readResults, readHumanLabels, JsonlAppender, type HumanLabel } from "./io";
export { JudgeCache, cacheKey, inputHash, type CacheEntry } from "./cache";
export { backoffDelay, parseRetryAfter, DEFAULT_RETRY, type RetryOptions } from "./retry";
export { DEFAULT_PRICES, costUsd, priceFor, type Price } from "./pricing";
export { parseJudgeName, resolveApiKey, apiKeyEnvNames, judgeLabel, type JudgeSpec } from "./spec";
export { CallError, OpenAIChatClient, GeminiClient, redact, type ChatClient, type CallResult, type CallErrorKind } from "./clients";
export { isClosed, offlineVerdict, type OfflineJudgeOptions } from "./offline";
export { Judge, type JudgeOptions, type JudgeOutcome, type JudgeStats } from "./judge";
export { runJudge, type RunJudgeOptions, type RunJudgeSummary } from "./run";
export { buildReport, formatReportMarkdown, formatSectionsMarkdown, cohenKappa, HUMAN, type JudgeReport, type ReportCell, type Agreement } from "./report";
export { judgeReward, judgeRewardDefinition, splitCompletion, type JudgeRewardOptions, type JudgeRewardSample } from "./reward";
