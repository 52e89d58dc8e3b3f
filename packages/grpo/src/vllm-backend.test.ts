import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { initBackend, Rng } from "@rarl/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenerationBackendError } from "./errors";
import { ToyPolicy } from "./testing/toy-policy";
import { VllmBackend } from "./vllm-backend";

/** A local server speaking the subset of vLLM's OpenAI-compatible protocol the backend uses. */
const requests: Array<{ url: string; body: any }> = [];
const adapters = new Set<string>();
let failNext = false;
const server = http.createServer((req, res) => {
  let data = "";
  req.on("data", (c) => {
    data += c;
  });
  req.on("end", () => {
    const body = data ? JSON.parse(data) : {};
    requests.push({ url: req.url!, body });
    const send = (code: number, obj: unknown) => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(obj));
    };
    if (failNext) {
      failNext = false;
      return send(500, { error: "boom" });
    }
    if (req.url === "/v1/load_lora_adapter") {
      if (!fs.existsSync(path.join(body.lora_path, "adapter_model.safetensors"))) return send(400, { error: "no adapter" });
      adapters.add(body.lora_name);
      return send(200, {});
    }
    if (req.url === "/v1/unload_lora_adapter") {
      adapters.delete(body.lora_name);
      return send(200, {});
    }
    if (body.model !== "base" && !adapters.has(body.model)) return send(404, { error: `model ${body.model} not found` });
    // Deterministic fake sampling: completion i = [seed % 100 + i, 7]; the last one is cut by length.
    const choices = Array.from({ length: body.n }, (_, i) => {
      const ids = [(body.seed % 100) + i, 7];
      const finish = i === body.n - 1 ? "length" : "stop";
      const tokens = ids.map((t) => `token_id:${t}`);
      if (req.url === "/v1/completions") {
        return { index: i, text: ids.join(","), finish_reason: finish, logprobs: { tokens, token_logprobs: ids.map(() => -0.5) } };
      }
      return { index: i, message: { role: "assistant", content: ids.join(",") }, finish_reason: finish, logprobs: { content: tokens.map((token) => ({ token, logprob: -0.25 })) } };
    });
    send(200, { choices });
  });
});

let base = "";
beforeAll(async () => {
  await initBackend();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const opts = (rng: Rng) => ({ numSamples: 3, maxNewTokens: 2, temperature: 1, topP: 0.9, topK: 0, minP: 0, repetitionPenalty: 1, rng });

describe("VllmBackend against a local mock server", () => {
  it("sends token-id prompts to /v1/completions and parses ids, logprobs and finish reasons", async () => {
    const b = new VllmBackend({ baseUrl: base, model: "base" });
    const rng = new Rng(5);
    const seed = new Rng(5).nextU32() & 0x7fffffff;
    const out = await b.generate({ promptIds: [1, 2, 3] }, opts(rng));
    const req = requests.at(-1)!;
    expect(req.url).toBe("/v1/completions");
    expect(req.body).toMatchObject({ model: "base", prompt: [1, 2, 3], n: 3, max_tokens: 2, top_p: 0.9, top_k: -1, seed, return_tokens_as_token_ids: true });
    expect(out.map((c) => c.ids)).toEqual([
      [seed % 100, 7],
      [(seed % 100) + 1, 7],
      [(seed % 100) + 2, 7],
    ]);
    expect(out.map((c) => c.finishReason)).toEqual(["eos", "eos", "length"]);
    expect(out[0].logprobs).toEqual([-0.5, -0.5]);
  });

  it("sends image prompts to /v1/chat/completions with a data: URL", async () => {
    const b = new VllmBackend({ baseUrl: base, model: "base" });
    const out = await b.generate({ promptIds: [1], image: new Uint8Array([137, 80, 78, 71]), chatMessages: [{ role: "user", content: "Is the lung healthy?" }] }, opts(new Rng(1)));
    const req = requests.at(-1)!;
    expect(req.url).toBe("/v1/chat/completions");
    expect(req.body.messages[0].content[0].image_url.url).toBe("data:image/png;base64,iVBORw==");
    expect(req.body.messages[0].content[1]).toEqual({ type: "text", text: "Is the lung healthy?" });
    expect(out).toHaveLength(3);
    expect(out[0].logprobs).toEqual([-0.25, -0.25]);
  });

  it("syncs the LoRA adapter with load_lora_adapter, then samples from it and unloads the old one", async () => {
    const policy = new ToyPolicy();
    const b = new VllmBackend({ baseUrl: base, model: "base", adapterName: "run" });
    await b.syncWeights(policy, 1);
    expect(b.currentModel).toBe("run-1");
    await b.syncWeights(policy, 2);
    expect(requests.slice(-3).map((r) => r.url)).toEqual(["/v1/load_lora_adapter", "/v1/load_lora_adapter", "/v1/unload_lora_adapter"]);
    expect(requests.at(-1)!.body).toEqual({ lora_name: "run-1" });
    expect([...adapters]).toEqual(["run-2"]);
    await b.generate({ promptIds: [1] }, opts(new Rng(0)));
    expect(requests.at(-1)!.body.model).toBe("run-2");
    policy.dispose();
  });

  it("turns HTTP errors and unreachable servers into GenerationBackendError naming the URL", async () => {
    const b = new VllmBackend({ baseUrl: base, model: "base", maxRetries: 0 });
    failNext = true;
    await expect(b.generate({ promptIds: [1] }, opts(new Rng(0)))).rejects.toThrow(/failed \/v1\/completions 1 time\(s\) with backoff; last error: .*answered HTTP 500/);
    // With retries, a transient 500 is retried after the backoff and the request succeeds.
    const r = new VllmBackend({ baseUrl: base, model: "base", maxRetries: 2, retryBackoffMs: 10 });
    failNext = true;
    expect(await r.generate({ promptIds: [1] }, opts(new Rng(0)))).toHaveLength(3);
    expect(r.events).toMatchObject([{ kind: "retry", route: "/v1/completions", attempt: 1 }]);
    // A 4xx other than a lost adapter is not retried.
    const unknown = new VllmBackend({ baseUrl: base, model: "nope", maxRetries: 3, retryBackoffMs: 10 });
    await expect(unknown.generate({ promptIds: [1] }, opts(new Rng(0)))).rejects.toThrow(/HTTP 404/);
    expect(unknown.events).toEqual([]);
    const dead = new VllmBackend({ baseUrl: "http://127.0.0.1:9", model: "base", timeoutMs: 2000, maxRetries: 0 });
    const err = await dead.generate({ promptIds: [1] }, opts(new Rng(0))).catch((e) => e);
    expect(err).toBeInstanceOf(GenerationBackendError);
    expect(err.details.url).toBe("http://127.0.0.1:9/v1/completions");
  });
});
