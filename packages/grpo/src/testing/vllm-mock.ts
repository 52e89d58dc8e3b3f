import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { openSafetensors, Rng } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { ToyPolicy, type ToyPolicyOptions } from "./toy-policy";

/**
 * A local stand-in for a vLLM server (tests only; 127.0.0.1, bounded bodies): the parts of its OpenAI-compatible
 * API that VllmBackend uses, with the toy bigram policy as the model. POST /v1/completions (token-id prompts, `n`,
 * `seed`, per-token `logprobs` with `return_tokens_as_token_ids`), POST /v1/load_lora_adapter (reads the PEFT
 * adapter the trainer wrote; plain-text answer like vLLM's) and /v1/unload_lora_adapter, 404 for an unknown model
 * (as vLLM). `stop()` / `start()` simulate a server that goes away and restarts (its adapters are lost).
 */
export class MockVllmServer {
  private server: http.Server | null = null;
  private port = 0;
  private readonly policy: ToyPolicy;
  private adapters = new Map<string, { a: Float32Array; b: Float32Array }>();
  readonly requests: Array<{ url: string; model?: string; status: number }> = [];
  /** Completions requests answered. */
  served = 0;
  /** When true, every load_lora_adapter answers HTTP 500 (a server that cannot take the new weights). */
  failAdapterLoads = false;

  constructor(
    readonly modelName: string,
    toy: ToyPolicyOptions,
    port = 0,
  ) {
    this.policy = new ToyPolicy(toy);
    this.port = port;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get loadedAdapters(): string[] {
    return [...this.adapters.keys()];
  }

  /** Listens on 127.0.0.1 (the same port after a stop, so the client's URL stays valid). */
  async start(): Promise<void> {
    this.adapters = new Map();
    const server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Closes the server and drops every open connection (a killed process). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  dispose(): void {
    this.policy.dispose();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let data = "";
    req.on("data", (c) => {
      data += c;
      if (data.length > 1 << 20) req.destroy();
    });
    req.on("end", () => {
      const send = (code: number, body: unknown, plain = false) => {
        this.requests.push({ url: req.url ?? "", model: parsed?.model, status: code });
        res.writeHead(code, { "content-type": plain ? "text/plain" : "application/json" });
        res.end(plain ? String(body) : JSON.stringify(body));
      };
      let parsed: Record<string, any> | null = null;
      try {
        parsed = data ? JSON.parse(data) : {};
      } catch {
        return send(400, { error: { message: "bad JSON", code: 400 } });
      }
      const body = parsed!;
      if (req.method !== "POST") return send(405, { error: { message: "POST only", code: 405 } });
      if (req.url === "/v1/load_lora_adapter") {
        if (this.failAdapterLoads) return send(500, { error: { message: "LoRA load failed (simulated)", code: 500 } });
        if (this.adapters.has(body.lora_name)) return send(400, { error: { message: `The lora adapter '${body.lora_name}' has already been loaded.`, code: 400 } });
        const f = path.join(String(body.lora_path), "adapter_model.safetensors");
        if (!fs.existsSync(f)) return send(404, { error: { message: `No adapter found at ${body.lora_path}`, code: 404 } });
        const st = openSafetensors(f);
        const a = st.read("base_model.model.toy.lora_A.weight").data as Float32Array;
        const b = st.read("base_model.model.toy.lora_B.weight").data as Float32Array;
        st.close();
        this.adapters.set(body.lora_name, { a: Float32Array.from(a), b: Float32Array.from(b) });
        return send(200, `Success: LoRA adapter '${body.lora_name}' added successfully.`, true);
      }
      if (req.url === "/v1/unload_lora_adapter") {
        if (!this.adapters.delete(body.lora_name)) return send(404, { error: { message: `The lora adapter '${body.lora_name}' cannot be found.`, code: 404 } });
        return send(200, `Success: LoRA adapter '${body.lora_name}' removed successfully.`, true);
      }
      if (req.url !== "/v1/completions") return send(404, { error: { message: `no route ${req.url}`, code: 404 } });
      const adapter = body.model === this.modelName ? null : this.adapters.get(body.model);
      if (body.model !== this.modelName && !adapter) return send(404, { error: { message: `The model \`${body.model}\` does not exist.`, type: "NotFoundError", code: 404 } });
      // Sample with the toy model carrying the requested adapter (zero B = the base model).
      const A = this.policy.loraA;
      const B = this.policy.loraB;
      const keepA = A.dataSync().slice();
      const keepB = B.dataSync().slice();
      tf.tidy(() => {
        if (adapter) {
          A.assign(tf.tensor(adapter.a, A.shape));
          B.assign(tf.tensor(adapter.b, B.shape));
        } else B.assign(tf.zerosLike(B));
      });
      const rng = new Rng(Number(body.seed ?? 0) >>> 0);
      this.policy
        .generate({ promptIds: body.prompt }, { numSamples: body.n, maxNewTokens: body.max_tokens, temperature: body.temperature ?? 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, rng })
        .then((comps) => {
          tf.tidy(() => {
            A.assign(tf.tensor(keepA, A.shape));
            B.assign(tf.tensor(keepB, B.shape));
          });
          this.served++;
          send(200, {
            id: `cmpl-${this.served}`,
            object: "text_completion",
            model: body.model,
            choices: comps.map((c, i) => ({
              index: i,
              text: c.text,
              finish_reason: c.finishReason === "length" ? "length" : "stop",
              stop_reason: null,
              logprobs: { tokens: c.ids.map((t) => `token_id:${t}`), token_logprobs: c.logprobs },
            })),
          });
        });
    });
  }
}
