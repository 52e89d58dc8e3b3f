import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runJudge } from "./run";
import { startFaultServer } from "./testing/fault-server";
import { faultPredictions, simulateFaults } from "./testing/fault-plan";

describe("fault run (small version of bench/fault-run.ts)", () => {
  it("150 predictions, concurrency 16: 0 lost, every outcome and request count as the fault script dictates", async () => {
    const srv = await startFaultServer({ defaultRetryAfter: "0" });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-faultrun-"));
    try {
      const preds = faultPredictions(150, 11, "t");
      const out = path.join(dir, "r.jsonl");
      const maxAttempts = 3; // scripts longer than this fail after 3 attempts (simulateFaults knows)
      const sum = await runJudge({
        judge: "openai:gpt-4o-mini",
        baseURL: `${srv.url}/v1`,
        env: { OPENAI_API_KEY: "sk-faultrun" },
        predictions: preds,
        out,
        concurrency: 16,
        timeoutMs: 3000, // generous: a slow answer on a loaded machine must not look like a hang (1.5 s was not, at load 11)
        retry: { baseDelayMs: 2, maxAttempts },
        cacheDir: path.join(dir, "cache"),
      });
      const rows = fs.readFileSync(out, "utf8").trim().split("\n").map((l) => JSON.parse(l));
      expect(sum.lost).toBe(0);
      expect(rows).toHaveLength(150);
      const byId = new Map(rows.map((r) => [r.id, r]));
      let expectedRequests = 0;
      const expectedFailures: Record<string, number> = {};
      for (const p of preds) {
        const script = /#fault=(\S+)/.exec(p.question)![1];
        const want = simulateFaults(script, maxAttempts);
        expectedRequests += want.requests;
        const got = byId.get(p.id);
        expect({ script, status: got.status, kind: got.error?.split(":")[0] }).toEqual({ script, status: want.status, kind: want.kind });
        expect({ script, requests: srv.byKey.get(p.question) }).toEqual({ script, requests: want.requests });
        if (want.kind) expectedFailures[want.kind] = (expectedFailures[want.kind] ?? 0) + 1;
        if (got.status === "scored") expect(got.prediction_score).toBe(p.prediction === "yes" ? 1 : 0);
      }
      expect(sum.failures).toEqual(expectedFailures);
      expect(sum.stats.requests).toBe(expectedRequests);
      expect(srv.requests).toBe(expectedRequests);
    } finally {
      await srv.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
