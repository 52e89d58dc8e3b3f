
// processor (M2)
export { ImageDecodeError, ProcessorError } from "./qwen2_vl/processor_errors";
export { compositeOverWhite, decodeImage, type ImageInput, PIL_BICUBIC, PIL_BILINEAR, type RgbImage, resampleCoeffs, resizePillow } from "./qwen2_vl/image";
export {
  DEFAULT_IMAGE_PROCESSOR_CONFIG,
  type ImageProcessorConfig,
  type ImageProcessorOutput,
  loadImageProcessorConfig,
  patchify,
  Qwen2VLImageProcessor,
  smartResize,
} from "./qwen2_vl/image_processor";
export { type ChatContentPart, type ChatMessage, ChatTemplate, type ChatTemplateOptions, loadChatTemplate } from "./qwen2_vl/chat_template";
export { Qwen2Tokenizer, type SpecialTokenIds } from "./qwen2_vl/tokenizer";
export { type ProcessInput, type ProcessorLoadOptions, type ProcessorOutput, Qwen2VLProcessor } from "./qwen2_vl/processor";
// parity tool (M2)
export { maxAbsDiff, TOLERANCES, toleranceFor, topIdMismatches } from "./parity/compare";
export { ParityFixture } from "./parity/fixture";
export { formatParityReport } from "./parity/report";
export { type CaseResult, type CaseStatus, discoverParityApi, type FieldResult, type ParityApi, type ParityOptions, type ParityReport, runParity } from "./parity/run";
// model (M1)
export * from "./qwen2_vl/index";
export { areAdaptersEnabled, type HostWeight, isLoraTraining, Linear, type LoraSlot, setAdaptersEnabled, setLoraTraining } from "./nn/linear";
export { activation, bmm, geluErf, layerNorm, quickGelu, rmsNorm, silu } from "./nn/ops";
export { type CheckpointBlock, checkpoint, isRecordingGradients } from "./nn/checkpoint";
export { checkpointedDecoderLayer, decoderLayerVariables } from "./qwen2_vl/checkpointed_layer";
// generation and log-probs (M3)
export { GenerationError, InvalidGenerationParamError, SequenceTooLongError } from "./generation/errors";
export {
  buildBatch,
  type GeneratedSample,
  type GenerateRequest,
  type GenerateResult,
  type GenerateStats,
  type GenerationConfigFile,
  type GenerationProcessor,
  generate,
  loadGenerationConfig,
  type PromptInput,
  type TextPrompt,
} from "./generation/generate";
export { type CompletionBatch, type CompletionLogprobs, completionLogprobs, completionLogprobsHost, readCompletionLogprobs } from "./generation/completion";
export { headLogits, lmHeadChunks, lmHeadWeight, logprobHead, releaseTransposedLmHead, transposedLmHead } from "./generation/lm_head";
export { VocabChunks, vocabChunkRows } from "./nn/vocab_chunks";
export { type ResolvedSamplingParams, type RowChoice, type SamplingParams, resolveSamplingParams, sampleRow, selectToken } from "./generation/sampling";
export { type FinishReason, type StopConfig, StopTracker } from "./generation/stopping";
export { chunkRows, tokenLogprobs } from "./generation/token_logprobs";
export type { TokenizedPrompt } from "./generation/types";
// LoRA (M2)
export {
  applyLora,
  DEFAULT_LORA_CONFIG,
  fromPeftConfig,
  getAdapter,
  type HasLinears,
  kaimingUniformA,
  LoraAdapter,
  type LoraConfig,
  LoraError,
  loadAdapter,
  loraScale,
  loraTargets,
  matchesTarget,
  peftModuleToHubPath,
  removeLora,
  resolveLoraConfig,
  saveAdapter,
  toPeftConfig,
} from "./lora/index";
