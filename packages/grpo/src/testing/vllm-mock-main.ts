/**
 * Runs {@link MockVllmServer} as its own process (tests kill it with SIGKILL to simulate a vLLM server that dies):
 * `node --import tsx vllm-mock-main.ts PORT MODEL [VOCAB] [SEED]`; prints "listening <port>" once it accepts
 * connections, on 127.0.0.1 only.
 */
import { initBackend } from "@rarl/core";
import { MockVllmServer } from "./vllm-mock";

const [port = "0", model = "toy-base", vocab = "16", seed = "0"] = process.argv.slice(2);
await initBackend();
const server = new MockVllmServer(model, { vocab: Number(vocab), seed: Number(seed) }, Number(port));
await server.start();
process.stdout.write(`listening ${new URL(server.baseUrl).port}\n`);
