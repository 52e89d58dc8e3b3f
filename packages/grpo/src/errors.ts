import { RarlError } from "@rarl/core";

/** A trainer config field is missing, of the wrong type or out of range. `details.field` names it. */
export class TrainConfigError extends RarlError {}

/**
 * The loss or a gradient became NaN/Inf. The trainer writes a checkpoint of the last good state
 * (`details.checkpoint`) before throwing this, and `details.step` is the step that failed.
 */
export class NonFiniteError extends RarlError {}

/** A checkpoint directory is missing, incomplete or does not match the run (`details.dir`). */
export class CheckpointError extends RarlError {}

/** A generation backend (local or remote) failed or returned malformed data (`details.url` for remote ones). */
export class GenerationBackendError extends RarlError {}

/** Shapes or values passed to the GRPO math do not fit together (`details` names the input). */
export class GrpoInputError extends RarlError {}

/**
 * RUN_DIR already holds a run and neither `resume` nor `overwrite` was given (RUN_EXISTS), or both were
 * (RUN_BAD_OPTIONS). `details.runDir` names the folder and `details.found` what is in it.
 */
export class RunDirError extends RarlError {}

/**
 * Training data that cannot be trained on, found when the data is loaded (DATA_PROMPT_TOO_LONG: a prompt longer than
 * the model's positions). The message names each row (file, row, sample id); `details.rows` lists them.
 */
export class TrainDataError extends RarlError {}
