import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

/**
 * A fake judge API on 127.0.0.1 for tests and the fault bench. It speaks the OpenAI
 * chat-completions (`POST .../chat/completions`) and Gemini generateContent
 * (`POST .../models/<m>:generateContent`) wire formats. Faults are scripted per sample inside
 * the question text: `#fault=429,500,ok` makes the 1st request for that question answer 429, the
 * 2nd 500, the 3rd (and later) normally. Fault names:
 *  ok | slow[@ms] | fenced | prose | 429[@seconds] | 500 | 503 | hang | malformed | range | badwire | 401
 * The verdict is computed from the prompt: prediction_score = normalised final answers equal,
 * reasoning_score likewise for reasoning (null when the prompt has no reference reasoning).
 */
export interface FaultServer {
  url: string;
  /** Requests received so far (every attempt and repair). */
  readonly requests: number;
  /** Most requests open at the same time so far. */
  readonly maxInFlight: number;
  /** Requests per question key. */
  byKey: Map<string, number>;
  /** One entry per request. */
  log: Array<{ key: string; attempt: number; fault: string; kind: "openai" | "gemini"; at: number; temperature?: number; hadKey: boolean; repair: boolean }>;
  close(): Promise<void>;
}

function norm(s: string): string {
  return s.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, " ").replace(/\s+/g, " ").trim();
}

function field(block: string, name: string): string | undefined {
  const m = new RegExp(`^${name}: (.*)$`, "m").exec(block);
  return m ? m[1] : undefined;
}

/** The verdict a careful judge would give for the default prompt's sample block. */
export function expectedVerdict(prompt: string): { evaluation: string; reasoning_score: 0 | 1 | null; prediction_score: 0 | 1 } {
  const gtAt = prompt.indexOf("\nGround truth:\n");
  const prAt = prompt.indexOf("\nPrediction:\n");
  const gt = gtAt >= 0 && prAt > gtAt ? prompt.slice(gtAt, prAt) : "";
  const pr = prAt >= 0 ? prompt.slice(prAt) : "";
  const stripFault = (s: string | undefined) => (s ?? "").replace(/#fault=\S*/g, "");
  const ps = norm(stripFault(field(gt, "Final answer"))) === norm(stripFault(field(pr, "Final answer"))) ? 1 : 0;
  const gr = field(gt, "Reasoning");
  const rs = gr === undefined ? null : norm(gr) === norm(field(pr, "Reasoning") ?? "") ? 1 : 0;
  return { evaluation: ps ? "The prediction matches the ground truth." : "The prediction differs from the ground truth.", reasoning_score: rs, prediction_score: ps };
}

export async function startFaultServer(opts: { defaultRetryAfter?: string } = {}): Promise<FaultServer> {
  const byKey = new Map<string, number>();
  const log: FaultServer["log"] = [];
  const sockets = new Set<Socket>();
  let count = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const server = http.createServer((req, res) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on("close", () => inFlight--);
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      count++;
      const url = req.url ?? "";
      const kind: "openai" | "gemini" = url.includes(":generateContent") ? "gemini" : "openai";
      let body: any = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        res.writeHead(400).end("{}");
        return;
      }
      const texts: string[] =
        kind === "openai"
          ? (body.messages ?? []).map((m: any) => String(m.content))
          : (body.contents ?? []).map((c: any) => (c.parts ?? []).map((p: any) => p.text ?? "").join(""));
      const prompt = texts[0] ?? "";
      const repair = texts.length > 1;
      const key = /^Question: (.*)$/m.exec(prompt)?.[1] ?? prompt.slice(0, 80);
      const attempt = byKey.get(key) ?? 0;
      byKey.set(key, attempt + 1);
      const plan = /#fault=(\S+)/.exec(key)?.[1]?.split(",") ?? [];
      const fault = plan[attempt] ?? "ok";
      const temperature = kind === "openai" ? body.temperature : body.generationConfig?.temperature;
      const hadKey = Boolean(req.headers.authorization || req.headers["x-goog-api-key"]);
      log.push({ key, attempt, fault, kind, at: Date.now(), temperature, hadKey, repair });

      const v = expectedVerdict(prompt);
      const send = (content: string) => {
        const inTok = Math.ceil(texts.join("").length / 4);
        const outTok = Math.ceil(content.length / 4);
        const payload =
          kind === "openai"
            ? {
                id: `chatcmpl-${count}`,
                object: "chat.completion",
                created: Math.floor(Date.now() / 1000),
                model: body.model,
                choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
                usage: { prompt_tokens: inTok, completion_tokens: outTok, total_tokens: inTok + outTok },
              }
            : {
                candidates: [{ content: { role: "model", parts: [{ text: content }] }, finishReason: "STOP", index: 0 }],
                usageMetadata: { promptTokenCount: inTok, candidatesTokenCount: outTok, totalTokenCount: inTok + outTok },
              };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(payload));
      };
      const error = (status: number, headers: Record<string, string> = {}) =>
        res
          .writeHead(status, { "content-type": "application/json", ...headers })
          .end(JSON.stringify({ error: { message: `injected ${status}`, code: status, status: status === 429 ? "RESOURCE_EXHAUSTED" : "INTERNAL" } }));

      const [name, arg] = fault.split("@");
      switch (name) {
        case "ok":
          return send(JSON.stringify(v));
        case "slow": {
          const t = setTimeout(() => send(JSON.stringify(v)), Number(arg ?? 50));
          res.on("close", () => clearTimeout(t));
          return;
        }
        case "fenced":
          return send(`Sure, here is the evaluation:\n\`\`\`json\n${JSON.stringify(v, null, 2)}\n\`\`\`\nLet me know if you need more.`);
        case "prose":
          return send(`My assessment follows. ${JSON.stringify(v)} That is all.`);
        case "429":
          return error(429, { "retry-after": arg ?? opts.defaultRetryAfter ?? "0" });
        case "500":
          return error(500);
        case "503":
          return error(503);
        case "401":
          return error(401);
        case "hang":
          return; // never answer; the client must time out
        case "malformed":
          return send("The prediction seems mostly right, I would give it a one.");
        case "range":
          return send(JSON.stringify({ ...v, prediction_score: 2, reasoning_score: v.reasoning_score === null ? null : 7 }));
        case "badwire":
          res.writeHead(200, { "content-type": "application/json" }).end('{"choices": [ {"message": ');
          return;
        default:
          return error(400);
      }
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return count;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    byKey,
    log,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
