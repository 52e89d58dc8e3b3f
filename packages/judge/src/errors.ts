import { RarlError } from "@rarl/core";

/** Base class of every @rarl/judge error. */
export class JudgeError extends RarlError {}

/** A predictions/results/labels file is malformed. `details.file` and `details.line` name the place. */
export class JudgeInputError extends JudgeError {}

/** A judge name, option or credential is missing or invalid (raised before any request is sent). */
export class JudgeConfigError extends JudgeError {}
