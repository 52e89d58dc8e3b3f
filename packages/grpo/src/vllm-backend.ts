import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLogger } from "@rarl/core";
import { GenerationBackendError } from "./errors";
import type { Completion, FinishReason, GenerationBackend, Policy, PreparedPrompt, SamplingOptions } from "./policy";

export interface VllmBackendOptions {
  /** Server root, e.g. "http://127.0.0.1:8000" (the OpenAI-compatible API is under /v1). */
  baseUrl: string;
  /** Served base model name (used until the first adapter sync). */
  model: string;
  /** Name prefix of the synced LoRA adapters; each sync loads `${adapterName}-${update}`. Default "rarl". */
  adapterName?: string;
  /**
   * Directory the server can read, where synced adapters are written (same machine or a shared mount).
   * Default: a temp dir.
   */
  adapterDir?: string;
  /** Sync the adapter every N optimizer updates. Default 1. */
  syncEvery?: number;
  /** Name of the environment variable holding the API key, if the server wants one. Default "VLLM_API_KEY". */
  apiKeyEnv?: string;
  /** Request timeout in ms. Default 600000. */
  timeoutMs?: number;
  /**
   * Retries of a request that fails on the network or with HTTP 5xx/429 (server gone, restarting, overloaded), with
   * exponential backoff; then GenerationBackendError "VLLM_GAVE_UP" (the trainer then checkpoints and stops).
   * Default 5.
   */
  maxRetries?: number;
  /** First backoff delay in ms, doubled per retry (capped at 30 s). Default 500. */
  retryBackoffMs?: number;
}

const log = getLogger("grpo");

interface LogprobEntry {
  token: string;
  logprob: number;
}

/**
 * Generation through a vLLM server's OpenAI-compatible API, for rollouts that outgrow one machine:
 * text prompts go to /v1/completions as token ids (exact prompt), image prompts to /v1/chat/completions with a
 * data: URL. `return_tokens_as_token_ids` gives back exact completion ids, which the trainer then scores with the
 * local policy. After updates the LoRA adapter is written in PEFT format and loaded with POST
 * /v1/load_lora_adapter (the server must run with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True).
 * Tested here only against a local mock server that speaks this protocol, not against a real vLLM.
 */
export class VllmBackend implements GenerationBackend {
  readonly name = "vllm";
  private model: string;
  private loaded: string | null = null;
  private readonly adapterDir: string;
  /** Events for logs and tests: retries, adapter reloads after a server restart. */
  readonly events: Array<{ kind: "retry" | "reload"; route: string; attempt: number; error: string }> = [];

  constructor(private readonly o: VllmBackendOptions) {
    this.model = o.model;
    this.adapterDir = o.adapterDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "rarl-vllm-"));
  }

  /** The model name requests currently use (the newest synced adapter, or the base model). */
  get currentModel(): string {
    return this.model;
  }

  /** One request, no retry. */
  private async postOnce(route: string, body: unknown): Promise<unknown> {
    const url = `${this.o.baseUrl.replace(/\/$/, "")}${route}`;
    const headers: Record<string, string> = { "content-type": "application/json" };
    const key = process.env[this.o.apiKeyEnv ?? "VLLM_API_KEY"];
    if (key) headers.authorization = `Bearer ${key}`;
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), signal: AbortSignal.timeout(this.o.timeoutMs ?? 600_000) });
      text = await res.text();
    } catch (e) {
      throw new GenerationBackendError(`vLLM request to ${url} failed: ${(e as Error).message}`, { code: "VLLM_UNREACHABLE", details: { url }, cause: e });
    }
    if (!res.ok) {
      throw new GenerationBackendError(`vLLM ${url} answered HTTP ${res.status}: ${text.slice(0, 500)}`, { code: "VLLM_HTTP", details: { url, status: res.status } });
    }
    try {
      return text ? JSON.parse(text) : {};
    } catch {
      // vLLM answers the adapter routes with plain text ("Success: LoRA adapter 'x' added successfully.").
      if (route.includes("lora_adapter")) return { message: text };
      throw new GenerationBackendError(`vLLM ${url} answered non-JSON: ${text.slice(0, 200)}`, { code: "VLLM_BAD_RESPONSE", details: { url } });
    }
  }

  /**
   * A request with retries: network errors and HTTP 5xx/429 are retried with exponential backoff; an HTTP 404 for
   * the synced adapter (a restarted server has lost it) reloads the adapter and retries. Other errors are thrown at
   * once; after `maxRetries` retries, GenerationBackendError "VLLM_GAVE_UP" with the last error.
   */
  private async post(route: string, body: Record<string, unknown>): Promise<unknown> {
    const max = this.o.maxRetries ?? 5;
    const backoff = this.o.retryBackoffMs ?? 500;
    let last: GenerationBackendError | null = null;
    for (let attempt = 0; attempt <= max; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, Math.min(30_000, backoff * 2 ** (attempt - 1))));
      try {
        return await this.postOnce(route, body.model !== undefined ? { ...body, model: this.model } : body);
      } catch (e) {
        if (!(e instanceof GenerationBackendError)) throw e;
        last = e;
        const status = e.details?.status as number | undefined;
        const lostAdapter = status === 404 && this.loaded !== null && body.model !== undefined && this.model === this.loaded;
        const transient = e.code === "VLLM_UNREACHABLE" || status === 429 || (status !== undefined && status >= 500);
        if (!lostAdapter && !transient) throw e;
        if (attempt === max) break;
        this.events.push({ kind: "retry", route, attempt: attempt + 1, error: e.message });
        log.warn("vLLM request failed; retrying", { route, attempt: attempt + 1, of: max, error: e.message });
        if (lostAdapter) {
          // The server restarted without our adapter: load it again from its folder (still on disk) and retry.
          try {
            await this.postOnce("/v1/load_lora_adapter", { lora_name: this.loaded, lora_path: path.join(this.adapterDir, this.loaded!) });
            this.events.push({ kind: "reload", route, attempt: attempt + 1, error: e.message });
          } catch (re) {
            last = re as GenerationBackendError;
          }
        }
      }
    }
    throw new GenerationBackendError(`vLLM at ${this.o.baseUrl} failed ${route} ${max + 1} time(s) with backoff; last error: ${last?.message}`, {
      code: "VLLM_GAVE_UP",
      details: { url: `${this.o.baseUrl}${route}`, attempts: max + 1 },
      cause: last,
    });
  }

  private sampling(opts: SamplingOptions): Record<string, unknown> {
    return {
      n: opts.numSamples,
      max_tokens: opts.maxNewTokens,
      temperature: opts.temperature,
      top_p: opts.topP,
      top_k: opts.topK > 0 ? opts.topK : -1,
      min_p: opts.minP,
      repetition_penalty: opts.repetitionPenalty,
      // A per-request seed drawn from the run's RNG keeps remote sampling reproducible from a checkpoint.
      seed: opts.rng.nextU32() & 0x7fffffff,
      return_tokens_as_token_ids: true,
      skip_special_tokens: false,
    };
  }

  async generate(prepared: PreparedPrompt, opts: SamplingOptions): Promise<Completion[]> {
    const useChat = prepared.image !== undefined;
    let json: { choices?: Array<Record<string, any>> };
    if (useChat) {
      if (!prepared.chatMessages?.length) {
        throw new GenerationBackendError("vLLM backend: an image prompt needs prepared.chatMessages", { code: "VLLM_BAD_PROMPT" });
      }
      const url = `data:${prepared.imageMime ?? "image/png"};base64,${Buffer.from(prepared.image!).toString("base64")}`;
      const messages = prepared.chatMessages.map((m, i) =>
        m.role === "user" && i === prepared.chatMessages!.findIndex((x) => x.role === "user")
          ? { role: "user", content: [{ type: "image_url", image_url: { url } }, { type: "text", text: m.content }] }
          : m,
      );
      json = (await this.post("/v1/chat/completions", { model: this.model, messages, logprobs: true, top_logprobs: 0, ...this.sampling(opts) })) as typeof json;
    } else {
      json = (await this.post("/v1/completions", { model: this.model, prompt: prepared.promptIds, logprobs: 0, ...this.sampling(opts) })) as typeof json;
    }
    const choices = json.choices;
    if (!Array.isArray(choices) || choices.length !== opts.numSamples) {
      throw new GenerationBackendError(`vLLM returned ${Array.isArray(choices) ? choices.length : "no"} choices, expected ${opts.numSamples}`, {
        code: "VLLM_BAD_RESPONSE",
        details: { url: this.o.baseUrl },
      });
    }
    return [...choices]
      .sort((a, b) => (a.index ?? 0) - (b.index ?? 0))
      .map((ch) => {
        const entries: LogprobEntry[] = useChat
          ? (ch.logprobs?.content ?? [])
          : (ch.logprobs?.tokens ?? []).map((token: string, i: number) => ({ token, logprob: ch.logprobs.token_logprobs[i] }));
        const ids = entries.map((e) => {
          const m = /^token_id:(\d+)$/.exec(e.token);
          if (!m) throw new GenerationBackendError(`vLLM token "${e.token}" is not "token_id:N" (is return_tokens_as_token_ids supported?)`, { code: "VLLM_BAD_RESPONSE" });
          return Number(m[1]);
        });
        const text: string = useChat ? (ch.message?.content ?? "") : (ch.text ?? "");
        const finishReason: FinishReason = ch.finish_reason === "length" ? "length" : ch.stop_reason != null && typeof ch.stop_reason === "string" ? "stop" : "eos";
        return { ids, text, finishReason, logprobs: entries.map((e) => e.logprob) };
      });
  }

  /**
   * Writes the current adapter (PEFT) and loads it into the server under a new name; unloads the previous one (an
   * unload that fails is only logged). `force` syncs whatever `syncEvery` says (on resume).
   */
  async syncWeights(policy: Policy<unknown, PreparedPrompt>, update: number, force = false): Promise<void> {
    if (!force && update % (this.o.syncEvery ?? 1) !== 0) return;
    const name = `${this.o.adapterName ?? "rarl"}-${update}`;
    const dir = path.join(this.adapterDir, name);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    policy.saveAdapter(dir);
    await this.post("/v1/load_lora_adapter", { lora_name: name, lora_path: dir }).catch((e: GenerationBackendError) => {
      // A retried load that the server had already done before its answer got lost.
      if (!(e.details?.status === 400 && /already (been )?loaded/i.test(e.message))) throw e;
    });
    const previous = this.loaded;
    this.loaded = name;
    this.model = name;
    if (previous && previous !== name) {
      await this.postOnce("/v1/unload_lora_adapter", { lora_name: previous }).catch((e: Error) => log.warn("vLLM unload_lora_adapter failed (ignored)", { adapter: previous, error: e.message }));
      fs.rmSync(path.join(this.adapterDir, previous), { recursive: true, force: true });
    }
  }
}
