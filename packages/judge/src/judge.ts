import fs from "node:fs";
import path from "node:path";
import { cacheKey, JudgeCache } from "./cache";
import { CallError, type CallErrorKind, type ChatClient, GeminiClient, OpenAIChatClient, redact } from "./clients";
import { JudgeConfigError } from "./errors";
import { type OfflineJudgeOptions, offlineSimilarity, offlineVerdict } from "./offline";
import type { TextSimilarity } from "@rarl/rewards";
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
  /** Backoff policy for 429 / 5xx / timeouts / connection errors. Defaults: {@link DEFAULT_RETRY}. */
  retry?: RetryOptions;
  /** Directory of the persistent cache. Default: none (no cache). */
  cacheDir?: string;
  /** Ignore cached invalid-output failures and ask the judge again (cached verdicts are still used). Default false. */
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
  /** Retries by cause. */
  retries: Partial<Record<CallErrorKind, number>>;
  /** Repair requests sent after an invalid first reply. */
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
    if (hit && !(hit.status === "failed" && this.opts.retryCachedFailures)) {
      this.counters.cacheHits++;
      if (hit.status === "scored") return { status: "scored", verdict: hit.verdict, cached: true };
      return { status: "failed", error: hit.error, errorKind: hit.error.split(":")[0], cached: true };
    }
    return this.sem.run(async () => {
      const withReasoning = hasReferenceReasoning(sample);
      const messages: ChatMessage[] = [{ role: "user", content: renderPrompt(sample, this.prompt) }];
      try {
        const first = await this.request(messages);
        let usage: Usage = first.usage;
        let parsed = parseVerdict(first.text, withReasoning);
        if (!parsed.ok) {
          this.counters.repairs++;
          const firstReason = parsed.reason;
          const second = await this.request([
            ...messages,
            { role: "assistant", content: first.text },
            { role: "user", content: renderRepair(parsed.reason) },
          ]);
          usage = { inputTokens: usage.inputTokens + second.usage.inputTokens, outputTokens: usage.outputTokens + second.usage.outputTokens };
          parsed = parseVerdict(second.text, withReasoning);
          if (!parsed.ok) {
            const error = `invalid_output: ${parsed.reason} (first reply: ${firstReason}; repair failed)`;
            this.cache?.put({ key, status: "failed", error, usage });
            return { status: "failed", error, errorKind: "invalid_output", cached: false } as JudgeOutcome;
          }
        }
        this.cache?.put({ key, status: "scored", verdict: parsed.verdict, usage });
        return { status: "scored", verdict: parsed.verdict, cached: false } as JudgeOutcome;
      } catch (e: any) {
        if (e instanceof CallError) return { status: "failed", error: `${e.kind}: ${e.message}`, errorKind: e.kind, cached: false } as JudgeOutcome;
        return { status: "failed", error: `internal: ${redact(String(e?.message ?? e), this.secrets)}`, errorKind: "internal", cached: false } as JudgeOutcome;
      }
    });
  }

  /** One logical request with retries on transient errors; throws the last CallError when they run out. */
  private async request(messages: ChatMessage[]): Promise<{ text: string; usage: Usage }> {
    const timeoutMs = this.opts.timeoutMs ?? 60_000;
    const temperature = this.opts.temperature ?? 0;
    for (let attempt = 0; ; attempt++) {
      this.counters.requests++;
      try {
        const r = await this.client!.call(messages, { timeoutMs, temperature });
        this.counters.inputTokens += r.usage.inputTokens;
        this.counters.outputTokens += r.usage.outputTokens;
        if (this.counters.costUsd !== null) this.counters.costUsd += costUsd(r.usage, this.price) ?? 0;
        return r;
      } catch (e: any) {
        const err = e instanceof CallError ? e : new CallError("network", redact(String(e?.message ?? e), this.secrets));
        if (!err.transient) throw err;
        if (attempt + 1 >= this.retry.maxAttempts) {
          throw new CallError(err.kind, `${err.message} (gave up after ${attempt + 1} attempts)`, err.status, err.retryAfterMs);
        }
        this.counters.retries[err.kind] = (this.counters.retries[err.kind] ?? 0) + 1;
        await sleep(backoffDelay(attempt, this.retry, err.retryAfterMs, this.opts.random));
      }
    }
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
