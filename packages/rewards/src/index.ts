export { EncoderError, NoEncoderError, RewardConfigError, RewardError, RewardInputError, RewardPluginError } from "./errors";
export type { AnswerType, RewardContext, RewardDefinition, RewardFn, RewardSample, TextSimilarity, TokenCounter } from "./types";
export { extractAnswer, extractThink, hasAnyTag, parseExactFormat, TAGS } from "./tags";
export { FACT_KEYS, type Facts, factAgreement, factCount, factsSimilarity, parseFacts, sampleFacts } from "./facts";
export { canonicalYesNo, expandReference, isYesNoReference, MAX_OPTIONAL_GROUPS, matchChoice, NO_WORDS, normalizeAnswer, YES_WORDS } from "./normalize";
export { lexicalF1, tokenF1 } from "./lexical";
export { accuracyReward, BUILTIN_REWARDS, clamp01, formatReward, lengthReward, reasoningReward, wellFormed } from "./builtins";
export { defineReward, RewardRegistry, runReward } from "./registry";
export { type CompositeOptions, CompositeReward, type CompositeScore, type RewardComponent, Semaphore } from "./composite";
export { loadTokenCounter } from "./tokenizer";
export { BertEncoder, type EncoderConfig, parseEncoderConfig, type WeightSource } from "./bertscore/encoder";
export { type BertScoreOptions, BertScorer, greedyMatch, type PRF } from "./bertscore/bertscore";
export {
  type BuildRewardsOptions,
  buildRewards,
  jsonPath,
  loadRewardConfig,
  REWARD_CONFIG_SCHEMA,
  resolveRewardConfig,
  type RewardConfig,
  type RewardEntryConfig,
  type RewardSet,
  validateRewardConfig,
} from "./config";
export { type CompletionLine, readCompletions, type ScoredLine, type ScoreFileOptions, type ScoreFileResult, scoreFile } from "./score-file";
