import fs from "node:fs";
import path from "node:path";
import type { TextSimilarity } from "@rarl/rewards";
import { cacheKey, JudgeCache } from "./cache";
import { CallError, type CallErrorKind, type ChatClient, GeminiClient, OpenAIChatClient, redact } from "./clients";
import { JudgeConfigError } from "./errors";
import { type OfflineJudgeOptions, offlineSimilarity, offlineVerdict } from "./offline";
import { parseVerdict } from "./parse";
import { costUsd, DEFAULT_PRICES, type Price, priceFor } from "./pricing";
import { DEFAULT_PROMPT, hasReferenceReasoning, type JudgePrompt, renderPrompt, renderRepair } from "./prompt";
import { backoffDelay, DEFAULT_RETRY, type RetryOptions, sleep } from "./retry";
import { type JudgeSpec, parseJudgeName, resolveApiKey } from "./spec";
import type { ChatMessage, PredictionRecord, Usage, Verdict } from "./types";

/** Options of a {@link Judge}. */
export interface JudgeOptions {
  /** Judge name: "openai:<model>", "gemini:<model>" or "offline". Required. */
  judge: string;
  /** Base URL of the API (OpenAI-compatible server such as vLLM/Ollama/llama.cpp, or a Gemini endpoint). Default: the SDK's official endpoint. */
  baseURL?: string;
  /** Name of the environment variable holding the API key. Default: OPENAI_API_KEY (openai), GEMINI_API_KEY then GOOGLE_API_KEY (gemini). */
  apiKeyEnv?: string;
  /** Environment to read the key from. Default: process.env. Keys are never taken from arguments or files. */
  env?: NodeJS.ProcessEnv;
  /** Evaluation prompt and its version. Default: the paper's Appendix B prompt ({@link DEFAULT_PROMPT}). */
  prompt?: JudgePrompt;
  /** Sampling temperature. Default 0. */
  temperature?: number;
  /** Per-request timeout in ms. Default 60000. */
  timeoutMs?: number;
  /** Samples judged at the same time (each holds its slot through its retries). Default 8. */
  concurrency?: number;
  /**
   * Attempt budget and backoff of each sample: 429 / 5xx / timeouts / connection errors / garbled responses and
   * unusable replies (not JSON, out of range) all count as failed attempts. Defaults: {@link DEFAULT_RETRY}.
   */
  retry?: RetryOptions;
  /** Directory of the persistent cache. Default: none (no cache). */
  cacheDir?: string;
  /**
   * No effect, kept so that callers keep compiling: failures are no longer cached (a re-run always asks again for
   * every sample without a cached verdict). Default false.
   */
  retryCachedFailures?: boolean;
  /** Price table (USD per 1M tokens) merged over {@link DEFAULT_PRICES}. */
  prices?: Record<string, Price>;
  /** Options of the offline judge (judge "offline"). */
  offline?: OfflineJudgeOptions;
  /** Use this client instead of building one from the SDKs (tests, custom transports). */
  client?: ChatClient;
  /** Random source for backoff jitter. Default Math.random. */
  random?: () => number;
}

/** Outcome of judging one sample. */
export interface JudgeOutcome {
  status: "scored" | "failed";
  verdict?: Verdict;
  /** Failure reason, "<kind>: <message>" (kinds: invalid_output, rate_limit, server_error, timeout, network, client_error, bad_response, internal). */
  error?: string;
  /** Failure kind (the part of `error` before the colon). */
  errorKind?: string;
  cached: boolean;
}

/** Counters of one judge. */
export interface JudgeStats {
  judge: string;
  /** HTTP requests sent (each retry and repair counts). */
  requests: number;
  /** Retries by the cause of the failed attempt before them (invalid_output: an unusable reply). */
  retries: Partial<Record<CallErrorKind | "invalid_output", number>>;
  /** Repair requests (each also counts as a retry of kind invalid_output) sent after an unusable fresh reply. */
  repairs: number;
  scored: number;
  failed: number;
  /** Failed samples by failure kind. */
  failures: Record<string, number>;
  cacheHits: number;
  inputTokens: number;
  outputTokens: number;
  /** USD at the price table; null when the model has no price. */
  costUsd: number | null;
}

class Semaphore {
  private waiting: Array<() => void> = [];
  private active = 0;
  constructor(private limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/**
 * An LLM judge (or the offline judge) with bounded concurrency, retries, a persistent cache and
 * token/cost accounting. Construct with {@link Judge.create}, which validates the name and the API
 * key before any request is sent.
 */
export class Judge {
  readonly spec: JudgeSpec;
  readonly prompt: JudgePrompt;
  private client?: ChatClient;
  private cache?: JudgeCache;
  private sem: Semaphore;
  private retry: Required<RetryOptions>;
  private secrets: string[];
  private price?: Price;
  private counters: JudgeStats;
  private similarity?: () => Promise<TextSimilarity>;

  private constructor(
    private opts: JudgeOptions,
    spec: JudgeSpec,
    client: ChatClient | undefined,
    secrets: string[],
  ) {
    this.spec = spec;
    this.client = client;
    this.secrets = secrets;
    this.prompt = opts.prompt ?? DEFAULT_PROMPT;
    const conc = opts.concurrency ?? 8;
    if (!Number.isInteger(conc) || conc < 1) throw new JudgeConfigError(`concurrency must be a positive integer, got ${conc}`, { code: "JUDGE_BAD_OPTION", details: { concurrency: conc } });
    const timeout = opts.timeoutMs ?? 60_000;
    if (!(timeout > 0)) throw new JudgeConfigError(`timeoutMs must be > 0, got ${timeout}`, { code: "JUDGE_BAD_OPTION", details: { timeoutMs: timeout } });
    this.sem = new Semaphore(conc);
    this.retry = { ...DEFAULT_RETRY, ...(opts.retry ?? {}) };
    if (!Number.isInteger(this.retry.maxAttempts) || this.retry.maxAttempts < 1) {
      throw new JudgeConfigError(`retry.maxAttempts must be a positive integer, got ${this.retry.maxAttempts}`, { code: "JUDGE_BAD_OPTION", details: { maxAttempts: this.retry.maxAttempts } });
    }
    this.price = priceFor(spec.model, { ...DEFAULT_PRICES, ...(opts.prices ?? {}) });
    if (spec.provider === "offline") this.similarity = offlineSimilarity(opts.offline ?? {});
    if (opts.cacheDir && spec.provider !== "offline") this.cache = new JudgeCache(opts.cacheDir, spec.name);
    this.counters = {
      judge: spec.name,
      requests: 0,
      retries: {},
      repairs: 0,
      scored: 0,
      failed: 0,
      failures: {},
      cacheHits: 0,
      inputTokens: 0,
      outputTokens: 0,
      costUsd: this.price || spec.provider === "offline" ? 0 : null,
    };
  }

  /** Validates the judge name and reads the API key from the environment (throws {@link JudgeConfigError}); sends nothing. */
  static create(opts: JudgeOptions): Judge {
    const spec = parseJudgeName(opts.judge);
    if (spec.provider === "offline") {
      const dir = opts.offline?.encoderDir;
      if (dir && !opts.offline?.similarity) {
        for (const f of ["config.json", "tokenizer.json"]) {
          if (!fs.existsSync(path.join(dir, f))) {
            throw new JudgeConfigError(`offline judge: encoder folder ${dir} has no ${f} (expected a Hugging Face BERT/RoBERTa folder)`, {
              code: "JUDGE_BAD_ENCODER",
              details: { file: path.join(dir, f) },
            });
          }
        }
      }
      return new Judge(opts, spec, undefined, []);
    }
    if (opts.client) return new Judge(opts, spec, opts.client, []);
    const key = resolveApiKey(spec.provider, opts.apiKeyEnv, opts.env);
    const client = spec.provider === "openai" ? new OpenAIChatClient(spec.model, key, opts.baseURL) : new GeminiClient(spec.model, key, opts.baseURL);
    return new Judge(opts, spec, client, [key]);
  }

  get name(): string {
    return this.spec.name;
  }

  /** Prompt version recorded with each result ("offline/v1" for the offline judge). */
  get promptVersion(): string {
    return this.spec.provider === "offline" ? "offline/v1" : this.prompt.version;
  }

  /** A snapshot of the counters. */
  stats(): JudgeStats {
    return JSON.parse(JSON.stringify(this.counters));
  }

  /** Judges one sample; never throws for API or output problems (they become status "failed"). */
  async judge(sample: PredictionRecord): Promise<JudgeOutcome> {
    const out = await this.judgeInner(sample);
    if (out.status === "scored") this.counters.scored++;
    else {
      this.counters.failed++;
      const k = out.errorKind ?? "internal";
      this.counters.failures[k] = (this.counters.failures[k] ?? 0) + 1;
    }
    return out;
  }

  private async judgeInner(sample: PredictionRecord): Promise<JudgeOutcome> {
    if (this.spec.provider === "offline") {
      try {
        const similarity = await this.similarity!();
        return { status: "scored", verdict: await offlineVerdict(sample, { ...this.opts.offline, similarity }), cached: false };
      } catch (e: any) {
        return { status: "failed", error: `internal: ${e?.message ?? e}`, errorKind: "internal", cached: false };
      }
    }
    const key = cacheKey(this.spec.name, this.prompt.version, sample);
    const hit = this.cache?.get(key);
    // Only verdicts are final. Failed entries (cached by earlier versions) are asked again.
    if (hit?.status === "scored") {
      this.counters.cacheHits++;
      return { status: "scored", verdict: hit.verdict, cached: true };
    }
    return this.sem.run(() => this.judgeWithRetries(sample, key));
  }

  /**
   * Asks the judge for one sample within one budget of `retry.maxAttempts` requests. A transient error (429, 5xx,
   * timeout, connection error, a garbled response) and an unusable reply (not JSON, fields out of range) are failed
   * attempts: the next attempt comes after a backoff delay (at least the server's Retry-After). The attempt after an
   * unusable fresh reply is a repair request (the reply and the repair instruction); the attempt after a failed
   * repair is a fresh request. Only a verdict is cached: a sample that runs out of attempts fails for this run and
   * is asked again by the next one. A client error (401, 400) fails at once.
   */
  private async judgeWithRetries(sample: PredictionRecord, key: string): Promise<JudgeOutcome> {
    const withReasoning = hasReferenceReasoning(sample);
    const prompt: ChatMessage[] = [{ role: "user", content: renderPrompt(sample, this.prompt) }];
    const timeoutMs = this.opts.timeoutMs ?? 60_000;
    const temperature = this.opts.temperature ?? 0;
    const max = this.retry.maxAttempts;
    let usage: Usage = { inputTokens: 0, outputTokens: 0 };
    let toRepair: { text: string; reason: string } | undefined;
    let last: { kind: CallErrorKind | "invalid_output"; message: string; retryAfterMs?: number } = { kind: "network", message: "no attempt made" };
    let repairs = 0;
    for (let attempt = 0; attempt < max; attempt++) {
      if (attempt > 0) {
        const k = last.kind as keyof JudgeStats["retries"];
        this.counters.retries[k] = (this.counters.retries[k] ?? 0) + 1;
        await sleep(backoffDelay(attempt - 1, this.retry, last.retryAfterMs, this.opts.random));
      }
      const repairing = toRepair;
      toRepair = undefined;
      const messages: ChatMessage[] = repairing
        ? [...prompt, { role: "assistant", content: repairing.text }, { role: "user", content: renderRepair(repairing.reason) }]
        : prompt;
      if (repairing) {
        this.counters.repairs++;
        repairs++;
      }
      this.counters.requests++;
      let text: string;
      try {
        const r = await this.client!.call(messages, { timeoutMs, temperature });
        this.counters.inputTokens += r.usage.inputTokens;
        this.counters.outputTokens += r.usage.outputTokens;
        if (this.counters.costUsd !== null) this.counters.costUsd += costUsd(r.usage, this.price) ?? 0;
        usage = { inputTokens: usage.inputTokens + r.usage.inputTokens, outputTokens: usage.outputTokens + r.usage.outputTokens };
        text = r.text;
      } catch (e: any) {
        const err = e instanceof CallError ? e : new CallError("network", redact(String(e?.message ?? e), this.secrets));
        if (!err.transient) return { status: "failed", error: `${err.kind}: ${err.message}`, errorKind: err.kind, cached: false };
        last = { kind: err.kind, message: err.message, retryAfterMs: err.retryAfterMs };
        continue;
      }
      const parsed = parseVerdict(text, withReasoning);
      if (parsed.ok) {
        this.cache?.put({ key, status: "scored", verdict: parsed.verdict, usage });
        return { status: "scored", verdict: parsed.verdict, cached: false };
      }
      last = { kind: "invalid_output" as const, message: `${repairing ? "repair reply: " : ""}${parsed.reason}` };
      if (!repairing) toRepair = { text, reason: parsed.reason };
    }
    const note = last.kind === "invalid_output" ? `; ${repairs} repair request(s)` : "";
    return { status: "failed", error: `${last.kind}: ${last.message} (gave up after ${max} attempts${note})`, errorKind: last.kind, cached: false };
  }

  /** Closes the cache file (and frees a BERTScore encoder the offline judge loaded). */
  close(): void {
    this.cache?.close();
    if (this.similarity && this.opts.offline?.encoderDir && !this.opts.offline.similarity) {
      this.similarity().then(
        (s) => (s as { dispose?: () => void }).dispose?.(),
        () => undefined,
      );
    }
  }
}
