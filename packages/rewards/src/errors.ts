import { RarlError } from "@rarl/core";

/** Base class of @rarl/rewards errors. */
export class RewardError extends RarlError {}

/**
 * A reward plugin threw, or returned a non-number / a value outside [0, 1].
 * `details.plugin` names the reward, `details.sample` the sample id.
 */
export class RewardPluginError extends RewardError {}

/** A rewards config (or a reward context) is invalid: unknown keys, wrong types, unknown reward name, unresolvable plugin. */
export class RewardConfigError extends RewardError {}

/**
 * A reward needs a text-similarity scorer (BERTScore) and none is configured. Configure `encoder` (a BERT/RoBERTa folder),
 * or opt into the lexical fallback explicitly with `"scorer": "lexical-f1"`.
 */
export class NoEncoderError extends RewardError {}

/** The BERTScore encoder folder is unusable (missing file, unsupported architecture, missing tensor). */
export class EncoderError extends RewardError {}

/** An input line of `scoreFile` is invalid. `details.line` is the 1-based line number. */
export class RewardInputError extends RewardError {}
