import { RarlError } from "@rarl/core";

/**
 * A template is malformed, or was rendered with a missing or unknown variable.
 * `details.template` names the template, `details.variable` the variable (when one is involved).
 */
export class TemplateError extends RarlError {}

/** The diversity sampler got bad options (no templates, bad weights, unknown template name). */
export class SamplerError extends RarlError {}
