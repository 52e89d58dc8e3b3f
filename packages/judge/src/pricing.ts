import type { Usage } from "./types";

/** USD per 1M tokens. */
export interface Price {
  /** USD per 1M input (prompt) tokens. */
  inputPerM: number;
  /** USD per 1M output (completion) tokens. */
  outputPerM: number;
}

/**
 * Default list prices (USD per 1M tokens) of the paper's two judges. Override per model with the
 * `prices` option (or `--price-input/--price-output` in the CLI); models missing here cost 0 (reported as unknown).
 * gpt-4o-mini: $0.15 in / $0.60 out. gemini-1.5-flash: $0.075 in / $0.30 out (prompts up to 128k tokens).
 */
export const DEFAULT_PRICES: Record<string, Price> = {
  "gpt-4o-mini": { inputPerM: 0.15, outputPerM: 0.6 },
  "gemini-1.5-flash": { inputPerM: 0.075, outputPerM: 0.3 },
};

/** Cost in USD of `usage` at `price`; undefined when no price is known. Pure. */
export function costUsd(usage: Usage, price: Price | undefined): number | undefined {
  if (!price) return undefined;
  return (usage.inputTokens * price.inputPerM + usage.outputTokens * price.outputPerM) / 1e6;
}

/** Finds the price of a model: exact name, else the longest table key that prefixes it (e.g. "gpt-4o-mini-2024-07-18"). */
export function priceFor(model: string, table: Record<string, Price> = DEFAULT_PRICES): Price | undefined {
  if (table[model]) return table[model];
  let best: string | undefined;
  for (const k of Object.keys(table)) if (model.startsWith(k) && (!best || k.length > best.length)) best = k;
  return best ? table[best] : undefined;
}
