import { GoogleGenAI } from "@google/genai";
import OpenAI from "openai";
import { parseRetryAfter } from "./retry";
import type { ChatMessage, Usage } from "./types";

/**
 * Why a call failed. Transient kinds are retried with backoff; the others (client_error: 4xx but 408/429) fail the
 * sample at once. bad_response (a body that is not the API's JSON, e.g. cut off by a proxy) is transient.
 */
export type CallErrorKind = "rate_limit" | "server_error" | "timeout" | "network" | "client_error" | "bad_response";

const TRANSIENT: ReadonlySet<CallErrorKind> = new Set(["rate_limit", "server_error", "timeout", "network", "bad_response"]);

/** A normalised failure of one request. Its message never contains the API key (see {@link redact}). */
export class CallError extends Error {
  constructor(
    readonly kind: CallErrorKind,
    message: string,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "CallError";
  }
  get transient(): boolean {
    return TRANSIENT.has(this.kind);
  }
}

/** Reply of one successful request. */
export interface CallResult {
  text: string;
  usage: Usage;
}

/** One LLM endpoint. `call` performs exactly one HTTP request (SDK retries are disabled). */
export interface ChatClient {
  call(messages: ChatMessage[], opts: { timeoutMs: number; temperature: number }): Promise<CallResult>;
}

/** Replaces every occurrence of each secret in `text` by "***". */
export function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join("***");
  return out;
}

function classifyStatus(status: number): CallErrorKind {
  if (status === 429) return "rate_limit";
  if (status === 408) return "timeout";
  if (status >= 500) return "server_error";
  return "client_error";
}

/** Runs `fn` with an AbortSignal that fires after `timeoutMs`; tells whether the timer fired. */
async function withTimeout<T>(timeoutMs: number, fn: (signal: AbortSignal) => Promise<T>): Promise<{ value?: T; error?: unknown; timedOut: boolean }> {
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, timeoutMs);
  try {
    return { value: await fn(ac.signal), timedOut: false };
  } catch (error) {
    return { error, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** OpenAI chat-completions client (OpenAI, vLLM, Ollama, llama.cpp server...) through the official `openai` SDK. */
export class OpenAIChatClient implements ChatClient {
  private client: OpenAI;
  constructor(
    private model: string,
    private apiKey: string,
    baseURL?: string,
  ) {
    // maxRetries 0: the judge's own retry loop is the only one, so every request is counted.
    this.client = new OpenAI({ apiKey, baseURL: baseURL ?? undefined, maxRetries: 0 });
  }

  async call(messages: ChatMessage[], opts: { timeoutMs: number; temperature: number }): Promise<CallResult> {
    const r = await withTimeout(opts.timeoutMs, (signal) =>
      this.client.chat.completions.create(
        { model: this.model, messages, temperature: opts.temperature },
        { signal, maxRetries: 0, timeout: opts.timeoutMs + 1000 },
      ),
    );
    if (r.error !== undefined) throw this.normalise(r.error, r.timedOut, opts.timeoutMs);
    const res = r.value as any;
    const text = res?.choices?.[0]?.message?.content;
    if (typeof text !== "string") throw new CallError("bad_response", "response has no choices[0].message.content");
    return { text, usage: { inputTokens: res.usage?.prompt_tokens ?? 0, outputTokens: res.usage?.completion_tokens ?? 0 } };
  }

  private normalise(e: any, timedOut: boolean, timeoutMs: number): CallError {
    const msg = (m: string) => redact(m, [this.apiKey]);
    if (timedOut || e instanceof OpenAI.APIConnectionTimeoutError) return new CallError("timeout", `no response within ${timeoutMs} ms`);
    if (e instanceof OpenAI.APIConnectionError) return new CallError("network", msg(`connection error: ${e.message}`));
    if (e instanceof OpenAI.APIError && typeof e.status === "number") {
      const retryAfterMs = e.headers ? parseRetryAfter((n) => e.headers!.get(n)) : undefined;
      return new CallError(classifyStatus(e.status), msg(`HTTP ${e.status}: ${e.message}`), e.status, retryAfterMs);
    }
    return new CallError("bad_response", msg(`unexpected response: ${e?.message ?? String(e)}`));
  }
}

/** Gemini generateContent client through the official `@google/genai` SDK (custom base URL via httpOptions.baseUrl). */
export class GeminiClient implements ChatClient {
  constructor(
    private model: string,
    private apiKey: string,
    private baseUrl?: string,
  ) {}

  async call(messages: ChatMessage[], opts: { timeoutMs: number; temperature: number }): Promise<CallResult> {
    let headers: Headers | undefined;
    // A client per call so the wrapped fetch can hand back this request's response headers (Retry-After);
    // retryOptions.attempts 1 turns the SDK's own retries off.
    const ai = new GoogleGenAI({
      apiKey: this.apiKey,
      httpOptions: {
        ...(this.baseUrl ? { baseUrl: this.baseUrl } : {}),
        retryOptions: { attempts: 1 },
        fetch: async (input: any, init?: any) => {
          const res = await fetch(input, init);
          headers = res.headers;
          return res;
        },
      },
    });
    const contents = messages.map((m) => ({ role: m.role === "assistant" ? "model" : "user", parts: [{ text: m.content }] }));
    const r = await withTimeout(opts.timeoutMs, (signal) =>
      ai.models.generateContent({ model: this.model, contents, config: { temperature: opts.temperature, abortSignal: signal } }),
    );
    if (r.error !== undefined) {
      const e: any = r.error;
      const msg = (m: string) => redact(m, [this.apiKey]);
      if (r.timedOut) throw new CallError("timeout", `no response within ${opts.timeoutMs} ms`);
      const status = typeof e?.status === "number" ? e.status : undefined;
      if (status !== undefined) {
        const retryAfterMs = headers ? parseRetryAfter((n) => headers!.get(n)) : undefined;
        throw new CallError(classifyStatus(status), msg(`HTTP ${status}: ${e.message}`), status, retryAfterMs);
      }
      if (e instanceof TypeError || /fetch failed|ECONNRE|socket/i.test(String(e?.message))) {
        throw new CallError("network", msg(`connection error: ${e?.message ?? e}`));
      }
      throw new CallError("bad_response", msg(`unexpected response: ${e?.message ?? String(e)}`));
    }
    const res: any = r.value;
    let text: string | undefined;
    try {
      text = res?.text;
    } catch {
      text = undefined;
    }
    if (typeof text !== "string") throw new CallError("bad_response", "response has no candidate text");
    return {
      text,
      usage: { inputTokens: res.usageMetadata?.promptTokenCount ?? 0, outputTokens: res.usageMetadata?.candidatesTokenCount ?? 0 },
    };
  }
}
