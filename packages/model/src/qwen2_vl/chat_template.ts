import fs from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";
import { ProcessorError } from "./processor_errors";

/** One content part of a chat message, in Hugging Face's form. */
export type ChatContentPart = { type: "image"; image?: unknown } | { type: "text"; text: string } | { type: "video"; video?: unknown };

/** A chat message in Hugging Face's form. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | string;
  content: string | ChatContentPart[];
}

/** Options of {@link renderChatTemplate}. */
export interface ChatTemplateOptions {
  /** Append the assistant header (`<|im_start|>assistant\n`). Default false, as in HF. */
  addGenerationPrompt?: boolean;
  /** Extra variables for the template (e.g. add_vision_id, bos_token). */
  extra?: Record<string, unknown>;
}

/**
 * Finds a checkpoint's chat template: chat_template.json ("chat_template"), else tokenizer_config.json
 * ("chat_template", string or list of {name, template}). Returns null when neither has one.
 */
export function loadChatTemplate(dir: string): string | null {
  const a = path.join(dir, "chat_template.json");
  for (const file of [a, path.join(dir, "tokenizer_config.json")]) {
    if (!fs.existsSync(file)) continue;
    let j: any;
    try {
      j = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      throw new ProcessorError(`${file}: not valid JSON: ${(e as Error).message}`, { code: "PROCESSOR_CORRUPT_FILE", details: { file }, cause: e });
    }
    let t: unknown = j?.chat_template;
    if (Array.isArray(t)) t = t.find((x: any) => x?.name === "default")?.template ?? t[0]?.template;
    if (typeof t === "string") return t;
  }
  return null;
}

/** A compiled chat template (jinja, as transformers renders it: trim_blocks + lstrip_blocks). */
export class ChatTemplate {
  private readonly tpl: Template;
  constructor(readonly source: string) {
    try {
      this.tpl = new Template(source);
    } catch (e) {
      throw new ProcessorError(`chat template does not parse: ${(e as Error).message}`, { code: "PROCESSOR_BAD_CONFIG", cause: e });
    }
  }

  /** Renders `messages` to the prompt text. */
  render(messages: ChatMessage[], opts: ChatTemplateOptions = {}): string {
    if (!Array.isArray(messages)) throw new ProcessorError("messages must be an array", { code: "BAD_INPUT" });
    for (const [i, m] of messages.entries()) {
      if (!m || typeof m.role !== "string" || !(typeof m.content === "string" || Array.isArray(m.content))) {
        throw new ProcessorError(`message ${i}: expected {role: string, content: string | parts[]}`, { code: "BAD_INPUT", details: { message: i } });
      }
    }
    try {
      return this.tpl.render({ messages, add_generation_prompt: opts.addGenerationPrompt ?? false, ...(opts.extra ?? {}) });
    } catch (e) {
      throw new ProcessorError(`chat template failed to render: ${(e as Error).message}`, { code: "BAD_INPUT", cause: e });
    }
  }
}
