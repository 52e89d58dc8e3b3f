/**
 * Fault run: 1,000 predictions against the fault-injecting server (OpenAI and Gemini wire formats),
 * concurrency 16. Checks that no sample is lost, that each outcome and request count is what its
 * fault script dictates, then re-runs to show the cache makes it free. Writes bench/RESULTS.md.
 * Run: `npm run bench -w @rarl/judge` (or `npx tsx bench/fault-run.ts [n]` in packages/judge).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileAtomic } from "@rarl/core";
import { runJudge } from "../src/index";
import { faultPredictions, simulateFaults } from "../src/testing/fault-plan";
import { startFaultServer } from "../src/testing/fault-server";

const N = Number(process.argv[2] ?? 1000);
const CONCURRENCY = 16;
const TIMEOUT_MS = 1000;
const MAX_ATTEMPTS = 6;
const BASE_DELAY_MS = 10;

const here = path.dirname(fileURLToPath(import.meta.url));
const work = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-judge-bench-"));
const md: string[] = [
  "# @rarl/judge fault run",
  "",
  `Machine: ${os.cpus()[0]?.model ?? "?"} x${os.cpus().length}, Node ${process.version}, ${new Date().toISOString()}`,
  `Command: \`cd packages/judge && npx tsx bench/fault-run.ts ${N}\``,
  `Config: ${N} predictions, concurrency ${CONCURRENCY}, timeout ${TIMEOUT_MS} ms, ${MAX_ATTEMPTS} attempts, backoff base ${BASE_DELAY_MS} ms, fault server on 127.0.0.1 (scripted per sample, see src/testing/fault-plan.ts)`,
  "",
  "| Judge (wire format) | Samples | Scored | Failed | Lost | Outcome = script | Requests | Expected requests | Retries | Repairs | Wall (s) | Re-run requests | Re-run wall (s) |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
];
const failureLines: string[] = [];
let bad = false;

const srv = await startFaultServer({ defaultRetryAfter: "0" });
try {
  for (const [judge, base, env] of [
    ["openai:gpt-4o-mini", `${srv.url}/v1`, { OPENAI_API_KEY: "sk-bench" }],
    ["gemini:gemini-1.5-flash", srv.url, { GEMINI_API_KEY: "gm-bench" }],
  ] as const) {
    const tag = judge.split(":")[0];
    const preds = faultPredictions(N, 7, tag);
    const out = path.join(work, `${tag}.jsonl`);
    const cacheDir = path.join(work, "cache");
    const opts = { judge, baseURL: base, env, predictions: preds, out, concurrency: CONCURRENCY, timeoutMs: TIMEOUT_MS, retry: { baseDelayMs: BASE_DELAY_MS, maxAttempts: MAX_ATTEMPTS }, cacheDir };
    const r0 = srv.requests;
    const sum = await runJudge(opts);
    const requests = srv.requests - r0;
    const rows = fs.readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const byId = new Map(rows.map((r: any) => [r.id, r]));
    let match = 0;
    let expectedRequests = 0;
    for (const p of preds) {
      const want = simulateFaults(/#fault=(\S+)/.exec(p.question)![1], MAX_ATTEMPTS);
      expectedRequests += want.requests;
      const got: any = byId.get(p.id);
      if (got && got.status === want.status && (got.error?.split(":")[0] ?? undefined) === want.kind) match++;
    }
    const r1 = srv.requests;
    const again = await runJudge(opts);
    const rerunRequests = srv.requests - r1;
    const lost = N - rows.length;
    if (lost !== 0 || sum.lost !== 0) bad = true;
    md.push(
      `| ${judge} (${tag === "openai" ? "chat-completions" : "generateContent"}) | ${N} | ${sum.scored} | ${sum.failed} | ${lost} | ${match}/${N} | ${requests} | ${expectedRequests} | ${JSON.stringify(sum.stats.retries).replace(/"/g, "")} | ${sum.stats.repairs} | ${(sum.wallMs / 1000).toFixed(1)} | ${rerunRequests} | ${(again.wallMs / 1000).toFixed(2)} |`,
    );
    failureLines.push(
      `- ${judge}: ${Object.entries(sum.failures)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(", ")} (tokens in ${sum.stats.inputTokens}, out ${sum.stats.outputTokens}, cost at list price $${(sum.stats.costUsd ?? 0).toFixed(4)})`,
    );
    const ex = new Map<string, string>();
    for (const f of sum.failedItems) {
      const k = f.error.split(":")[0];
      if (!ex.has(k)) ex.set(k, `${f.id}: ${f.error}`);
    }
    for (const v of ex.values()) failureLines.push(`  - e.g. ${v}`);
  }
} finally {
  await srv.close();
  fs.rmSync(work, { recursive: true, force: true });
}
md.push("", "Failures itemised by kind (each failed sample's reason is in its results row):", "", ...failureLines, "");
md.push(
  "\"Outcome = script\": samples whose final status and failure kind equal what the fault script dictates (simulateFaults). Requests beyond the expected count are extra retries caused by a request outliving the timeout on the loaded machine. Re-run: the same run again with the cache (transient failures are not cached and are retried).",
);
writeFileAtomic(path.join(here, "RESULTS.md"), `${md.join("\n")}\n`);
process.stdout.write(`${md.join("\n")}\n`);
if (bad) {
  process.stderr.write("fault run lost samples\n");
  process.exitCode = 1;
}
