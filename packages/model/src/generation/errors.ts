import { RarlError } from "@rarl/core";

/** Base class of every error thrown by the generation / log-prob code of @rarl/model. */
export class GenerationError extends RarlError {}

/**
 * A sampling or generation parameter is out of range (`details.field` names it, `details.value` holds the
 * value, `details.expected` says what was expected).
 */
export class InvalidGenerationParamError extends GenerationError {}

/**
 * A prompt plus `maxNewTokens` (or a prompt plus its completion) does not fit the model's
 * `max_position_embeddings` (`details.row`, `details.promptLength`, `details.maxNewTokens`, `details.limit`).
 */
export class SequenceTooLongError extends GenerationError {}
