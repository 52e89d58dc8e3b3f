export {};
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
