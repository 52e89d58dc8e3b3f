import { RarlError } from "@rarl/core";

/**
 * Error of the Qwen2-VL processor (image decoding/resizing, tokenizer, chat template, prompt expansion).
 * `code` says which: PROCESSOR_MISSING_FILE, PROCESSOR_CORRUPT_FILE, PROCESSOR_BAD_CONFIG, IMAGE_DECODE,
 * IMAGE_BAD_SIZE, IMAGE_PAD_MISMATCH, SEQUENCE_TOO_LONG, BAD_INPUT. `details` names the file / image / field.
 */
export class ProcessorError extends RarlError {}

/** An image could not be read or decoded (`details.image` names it). */
export class ImageDecodeError extends ProcessorError {}
