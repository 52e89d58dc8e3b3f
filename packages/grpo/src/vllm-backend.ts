import fs from "node:fs";
import os from "node:os";
import path from "node:path";
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
}

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

  constructor(private readonly o: VllmBackendOptions) {
    this.model = o.model;
    this.adapterDir = o.adapterDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "rarl-vllm-"));
  }

  /** The model name requests currently use (the newest synced adapter, or the base model). */
  get currentModel(): string {
    return this.model;
  }

  private async post(route: string, body: unknown): Promise<unknown> {
    const url = `${this.o.baseUrl.replace(/\/$/, "")}${route}`;
    const headers: Record<string, string> = { "content-type": "application/json" };
    const key = process.env[this.o.apiKeyEnv ?? "VLLM_API_KEY"];
    if (key) headers.authorization = `Bearer ${key}`;
    let res: Response;
    try {
      res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), signal: AbortSignal.timeout(this.o.timeoutMs ?? 600_000) });
    } catch (e) {
      throw new GenerationBackendError(`vLLM request to ${url} failed: ${(e as Error).message}`, { code: "VLLM_UNREACHABLE", details: { url }, cause: e });
    }
    const text = await res.text();
    if (!res.ok) {
      throw new GenerationBackendError(`vLLM ${url} answered HTTP ${res.status}: ${text.slice(0, 500)}`, { code: "VLLM_HTTP", details: { url, status: res.status } });
    }
    try {
      return text ? JSON.parse(text) : {};
    } catch {
      throw new GenerationBackendError(`vLLM ${url} answered non-JSON: ${text.slice(0, 200)}`, { code: "VLLM_BAD_RESPONSE", details: { url } });
    }
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

  /** Writes the current adapter (PEFT) and loads it into the server under a new name; unloads the previous one. */
  async syncWeights(policy: Policy<unknown, PreparedPrompt>, update: number): Promise<void> {
    if (update % (this.o.syncEvery ?? 1) !== 0) return;
    const name = `${this.o.adapterName ?? "rarl"}-${update}`;
    const dir = path.join(this.adapterDir, name);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    policy.saveAdapter(dir);
    await this.post("/v1/load_lora_adapter", { lora_name: name, lora_path: dir });
    const previous = this.loaded;
    this.loaded = name;
    this.model = name;
    if (previous) {
      await this.post("/v1/unload_lora_adapter", { lora_name: previous });
      fs.rmSync(path.join(this.adapterDir, previous), { recursive: true, force: true });
    }
  }
}
