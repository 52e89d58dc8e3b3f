import fs from "node:fs";
import { Tokenizer } from "tokenizers";
import { RewardConfigError } from "./errors";
import type { TokenCounter } from "./types";

/**
 * A TokenCounter over a Hugging Face tokenizer.json (npm `tokenizers`), counting tokens without special tokens.
 * For RARL use the policy model's tokenizer (Qwen2-VL: `<think>` is NOT a special token there, it counts as several).
 */
export function loadTokenCounter(file: string): TokenCounter & { tokenizer: Tokenizer } {
  if (!fs.existsSync(file))
    throw new RewardConfigError(`tokenizer file not found: ${file} (expected a Hugging Face tokenizer.json)`, { code: "REWARD_TOKENIZER", details: { file } });
  let tokenizer: Tokenizer;
  try {
    tokenizer = Tokenizer.fromFile(file);
  } catch (e) {
    throw new RewardConfigError(`${file}: not a loadable tokenizer.json: ${(e as Error).message}`, { code: "REWARD_TOKENIZER", details: { file }, cause: e });
  }
  return {
    tokenizer,
    async countTokens(text: string) {
      const enc = await tokenizer.encode(text, null, { addSpecialTokens: false });
      return enc.getLength();
    },
  };
}
