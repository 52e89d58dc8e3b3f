/**
 * Stop criteria of one generated sample: EOS ids, stop strings (on the decoded text) and max_new_tokens.
 *
 * Conventions (those of vLLM's defaults, which TRL's GRPO trainer consumes):
 * - an EOS id ends the sample with finish reason "stop"; the EOS id stays in `ids` (and gets a log-prob), so a
 *   policy-gradient step can learn to emit it; the text is decoded without special tokens.
 * - a stop string ends the sample with finish reason "stop" as soon as the decoded completion contains it; `ids`
 *   keep the token that completed it, the returned text is cut just before the stop string (not included).
 * - reaching `maxNewTokens` without either gives finish reason "length".
 */

/** Why a sample ended: "stop" (an EOS id or a stop string) or "length" (max_new_tokens reached). */
export type FinishReason = "stop" | "length";

/** Stop configuration of one request. */
export interface StopConfig {
  /** Token ids that end a sample (generation_config.json `eos_token_id`, else config.json's). */
  eosTokenIds: readonly number[];
  /** Strings that end a sample once they appear in its decoded text; trimmed from the returned text. Default none. */
  stopStrings: readonly string[];
  /** Most tokens generated per sample (>= 1). */
  maxNewTokens: number;
}

/**
 * Tracks one sample's tokens and decides when it stops. Decoding is the caller's job (the tokenizer decodes
 * asynchronously, best batched over rows): when stop strings are configured, pass the decoded completion text
 * (special tokens skipped) including the new token to {@link StopTracker.push}.
 */
export class StopTracker {
  readonly ids: number[] = [];
  readonly logprobs: number[] = [];
  finishReason: FinishReason | null = null;
  /** Decoded text cut before a matched stop string (set when a stop string ended the sample). */
  cutText: string | null = null;
  private lastLen = 0;
  private readonly eos: Set<number>;
  private readonly maxStop: number;

  constructor(private readonly cfg: StopConfig) {
    this.eos = new Set(cfg.eosTokenIds);
    this.maxStop = cfg.stopStrings.reduce((m, s) => Math.max(m, s.length), 0);
  }

  get done(): boolean {
    return this.finishReason !== null;
  }

  /** Whether the caller must pass the decoded text to {@link push}. */
  get needsText(): boolean {
    return this.cfg.stopStrings.length > 0;
  }

  /**
   * Appends a token (with its log-prob) and returns whether the sample is now finished. No-op once finished.
   * @param text the decoded completion including this token; required when stop strings are configured.
   */
  push(id: number, logprob: number, text?: string): boolean {
    if (this.done) return true;
    this.ids.push(id);
    this.logprobs.push(logprob);
    if (this.eos.has(id)) {
      this.finishReason = "stop";
      return true;
    }
    if (this.cfg.stopStrings.length > 0) {
      if (text === undefined) throw new Error("StopTracker.push: stop strings are configured, so the decoded text is required");
      // Only the tail can hold a new match; back off a little for byte-level tokens still being completed.
      const from = Math.max(0, this.lastLen - this.maxStop - 4);
      let at = -1;
      for (const s of this.cfg.stopStrings) {
        if (s.length === 0) continue;
        const i = text.indexOf(s, from);
        if (i >= 0 && (at < 0 || i < at)) at = i;
      }
      this.lastLen = text.length;
      if (at >= 0) {
        this.finishReason = "stop";
        this.cutText = text.slice(0, at);
        return true;
      }
    }
    if (this.ids.length >= this.cfg.maxNewTokens) {
      this.finishReason = "length";
      return true;
    }
    return false;
  }
}
