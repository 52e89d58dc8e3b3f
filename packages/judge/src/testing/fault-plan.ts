import type { PredictionRecord } from "../types";

/** Fault scripts and their weights for the fault-run bench/test (see fault-server.ts for the names). */
export const FAULT_MIX: Array<[string, number]> = [
  ["ok", 50],
  ["fenced", 8],
  ["prose", 5],
  ["429@0.05,ok", 5],
  ["429,429,ok", 4],
  ["500,ok", 5],
  ["503,500,ok", 3],
  ["hang,ok", 3],
  ["malformed,ok", 4],
  ["range,ok", 3],
  ["fenced,ok", 2],
  // permanent outcomes
  ["malformed,malformed", 2],
  ["range,malformed", 1],
  ["500,500,500,500,500,500", 1],
  ["429,429,429,429,429,429", 1],
  ["hang,hang,hang,hang,hang,hang", 1],
  ["401", 1],
  ["badwire", 1],
];

/** Deterministic predictions with a fault script each (mulberry32 PRNG from `seed`). */
export function faultPredictions(n: number, seed = 7, tag = "bench"): PredictionRecord[] {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const total = FAULT_MIX.reduce((s, [, w]) => s + w, 0);
  const datasets = ["Ours", "VQA-RAD", "SLAKE", "VQA-Med 2019", "Path-VQA"];
  const out: PredictionRecord[] = [];
  for (let i = 0; i < n; i++) {
    let x = rand() * total;
    let fault = FAULT_MIX[0][0];
    for (const [f, w] of FAULT_MIX) {
      x -= w;
      if (x < 0) {
        fault = f;
        break;
      }
    }
    const dataset = datasets[i % datasets.length];
    const right = rand() < 0.6;
    const rec: PredictionRecord = { id: `${tag}-${i}`, dataset, question: `${tag} sample ${i} #fault=${fault}`, reference: "yes", prediction: right ? "yes" : "no" };
    if (dataset === "Ours") {
      rec.reference_reasoning = "the right lung shows an opacity";
      rec.prediction_reasoning = rand() < 0.6 ? "the right lung shows an opacity" : "the heart looks enlarged";
    }
    out.push(rec);
  }
  return out;
}

/**
 * What the judge must do with a fault script: final status, failure kind and number of requests. One budget of
 * `maxAttempts` requests per sample; 429/500/503/hang/badwire and unusable replies (malformed, range) are failed
 * attempts, 401 fails at once. Pure.
 */
export function simulateFaults(script: string, maxAttempts: number): { status: "scored" | "failed"; kind?: string; requests: number } {
  const plan = script.split(",");
  const failedAttempt: Record<string, string> = {
    "429": "rate_limit",
    "500": "server_error",
    "503": "server_error",
    hang: "timeout",
    badwire: "bad_response",
    malformed: "invalid_output",
    range: "invalid_output",
  };
  let kind = "";
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const f = (plan[attempt] ?? "ok").split("@")[0];
    if (f === "401") return { status: "failed", kind: "client_error", requests: attempt + 1 };
    if (!(f in failedAttempt)) return { status: "scored", requests: attempt + 1 };
    kind = failedAttempt[f];
  }
  return { status: "failed", kind, requests: maxAttempts };
}
