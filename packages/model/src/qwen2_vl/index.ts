export {
  loadQwen2VLConfig,
  ModelConfigError,
  parseQwen2VLConfig,
  parseVisionConfig,
  QWEN2_VL_2B_INSTRUCT_CONFIG,
  type Qwen2VLConfig,
  type Qwen2VLVisionConfig,
} from "./config";
export { type BuildQwen2VLOptions, buildQwen2VLFromSource, CheckpointError, defaultVocabChunkBytes, expectedWeights, type LoadedQwen2VL, type LoadQwen2VLOptions, loadQwen2VL, normalizeKey } from "./loading";
export { buildAttentionMask, type DecoderLayerWeights, type LayerKV, MASK_MIN, Qwen2VLTextModel, type TextWeights } from "./language";
export { type ForwardArgs, type ForwardOutput, KVCache, ModelInputError, Qwen2VLForConditionalGeneration, type SharedPrefix, shareCache, tileCache } from "./model";
export {
  applyRotary,
  decodePositions,
  getRopeIndex,
  mropeCosSin,
  mropeCosSinTensors,
  type RopeIndex,
  type RopeIndexConfig,
  ropeInvFreq,
  visionRotPosEmb,
} from "./rope";
export { checkGrid, Qwen2VisionTransformerPretrainedModel, type VisionBlockWeights, type VisionIntermediates, type VisionWeights } from "./vision";
