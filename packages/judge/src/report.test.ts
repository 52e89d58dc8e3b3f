import { describe, expect, it } from "vitest";
import { buildReport, cohenKappa, formatReportMarkdown } from "./report";
import type { ResultRecord } from "./types";

function r(id: string, dataset: string, judge: string, ps: 0 | 1 | null, rs: 0 | 1 | null, status: "scored" | "failed" = "scored", error?: string): ResultRecord {
  return { id, dataset, judge, prediction_score: ps, reasoning_score: rs, evaluation: "", status, error };
}

describe("cohenKappa", () => {
  it("matches hand-computed values", () => {
    // po = 0.75, pe = 0.5*0.25 + 0.5*0.75 = 0.5 -> kappa 0.5
    expect(cohenKappa([1, 1, 0, 0], [1, 0, 0, 0])).toBeCloseTo(0.5, 12);
    expect(cohenKappa([1, 0, 1, 0], [1, 0, 1, 0])).toBe(1);
    expect(cohenKappa([1, 0], [0, 1])).toBe(-1);
    expect(cohenKappa([1, 1], [1, 1])).toBeNull();
    expect(cohenKappa([], [])).toBeNull();
  });
});

describe("buildReport / formatReportMarkdown", () => {
  const rows: ResultRecord[] = [
    r("1", "Ours", "openai:gpt-4o-mini", 1, 1),
    r("2", "Ours", "openai:gpt-4o-mini", 0, 1),
    r("3", "Ours", "openai:gpt-4o-mini", 1, 0),
    r("4", "Ours", "openai:gpt-4o-mini", null, null, "failed", "timeout: no response"),
    r("5", "VQA-RAD", "openai:gpt-4o-mini", 1, null),
    r("6", "VQA-RAD", "openai:gpt-4o-mini", 0, null),
    r("1", "Ours", "gemini:gemini-1.5-flash", 1, 1),
    r("2", "Ours", "gemini:gemini-1.5-flash", 1, 1),
    r("3", "Ours", "gemini:gemini-1.5-flash", 1, 0),
    r("4", "Ours", "gemini:gemini-1.5-flash", 0, 0),
    r("5", "VQA-RAD", "gemini:gemini-1.5-flash", 1, null),
    r("6", "VQA-RAD", "gemini:gemini-1.5-flash", 1, null),
  ];
  it("computes per dataset x judge percentages over scored rows, and counts failures", () => {
    const rep = buildReport(rows);
    const c = rep.cells.find((x) => x.dataset === "Ours" && x.judge === "openai:gpt-4o-mini")!;
    expect(c).toMatchObject({ total: 4, scored: 3, failed: 1, failures: { timeout: 1 }, reasoningN: 3 });
    expect(c.finalPct).toBeCloseTo(200 / 3, 10);
    expect(c.reasoningPct).toBeCloseTo(200 / 3, 10);
    const v = rep.cells.find((x) => x.dataset === "VQA-RAD" && x.judge === "openai:gpt-4o-mini")!;
    expect(v.reasoningPct).toBeNull();
    expect(v.finalPct).toBe(50);
  });
  it("computes agreement and kappa between judges over samples both scored", () => {
    const rep = buildReport(rows);
    const a = rep.agreement.find((x) => x.score === "prediction")!;
    // ids 1,2,3,5,6: openai 1,0,1,1,0 vs gemini 1,1,1,1,1 -> 3/5 agree; gemini constant -> pe = 0.6, kappa 0
    expect(a.n).toBe(5);
    expect(a.percentAgreement).toBeCloseTo(60, 10);
    expect(a.kappa).toBeCloseTo(0, 12);
    const rr = rep.agreement.find((x) => x.score === "reasoning")!;
    expect(rr.n).toBe(3);
    expect(rr.percentAgreement).toBe(100);
  });
  it("adds human labels as the last column group and compares judges with them", () => {
    const rep = buildReport(rows, {
      human: [
        { id: "1", reasoning_score: 1, prediction_score: 1 },
        { id: "2", reasoning_score: 0, prediction_score: 0 },
      ],
    });
    expect(rep.judges).toContain("human");
    expect(rep.cells.find((c) => c.judge === "human")).toMatchObject({ dataset: "Ours", scored: 2, finalPct: 50 });
    const md = formatReportMarkdown(rep);
    const header = md.split("\n")[0];
    expect(header).toBe(
      "| Dataset | GPT-4o mini Reasoning (%) | GPT-4o mini Final (%) | Gemini 1.5 Flash Reasoning (%) | Gemini 1.5 Flash Final (%) | Human Evaluation Reasoning (%) | Human Evaluation Final (%) |",
    );
    expect(md).toContain("| Ours | 66.67% | 66.67% | 50.00% | 75.00% | 50.00% | 50.00% |");
    expect(md).toContain("| VQA-RAD | _ | 50.00% | _ | 100.00% | _ | _ |");
    expect(md).toContain("| GPT-4o mini | Human Evaluation | Final | 2 | 100.00 | 1.000 |");
  });
  it("labels the offline judge as not an LLM judge", () => {
    const md = formatReportMarkdown(buildReport([r("1", "SLAKE", "offline", 1, null)]));
    expect(md).toContain("offline (not an LLM judge) Final (%)");
  });
});
