export type { AnswerType, Sample, SampleImage, SkippedRow } from "./types";
export { sampleJsonSchema, sampleProblem, isSample } from "./schema";
export { DatasetError, type DatasetErrorCode, isSkippable } from "./errors";
export { DatasetStream, type PipelineOptions, type VerifyImages } from "./pipeline";
export { loadDataset, DATASET_FORMATS, type DatasetFormat, type LoadOptions } from "./load";
export type { ColumnMapping } from "./formats/generic";
export { shortAnswerFromExplanation } from "./formats/silvar";
export { choiceLetter, cvBenchScore, type CvBenchResult, type CvBenchScore, type CvBenchSource } from "./formats/parquet";
export { inferAnswerType, isYesNo } from "./fields";
export { checkRelativeImagePath, realImagePath } from "./paths";
export { decodeImage, imageInput, type DecodedImage } from "./image";
export {
  largestRemainder,
  stratifiedSplit,
  paperSplit,
  PAPER_MODALITY_COUNTS,
  PAPER_TEST_COUNTS,
  type SplitOptions,
  type SplitResult,
} from "./split";
export { synthesize, synthSpec, synthSvg, synthQuestions, synthReasoning, type SynthOptions, type SynthImageSpec, type SynthModality, type SynthResult, type SynthSplit, type SynthStyle, type SynthQuestion, type QuestionFamily } from "./synth";
export { countSamples, datasetStats, exportSamples, type DatasetStats } from "./stats";
