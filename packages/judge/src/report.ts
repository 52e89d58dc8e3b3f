import type { HumanLabel } from "./io";
import { judgeLabel } from "./spec";
import type { ResultRecord } from "./types";

/** Name under which human labels appear in a report. */
export const HUMAN = "human";

/** Scores of one dataset × judge. Percentages are over scored samples; failures are excluded and counted. */
export interface ReportCell {
  dataset: string;
  judge: string;
  /** Results rows (scored + failed). */
  total: number;
  scored: number;
  failed: number;
  /** Failed rows by kind ("timeout", "invalid_output", ...). */
  failures: Record<string, number>;
  predictionCorrect: number;
  /** Final-answer accuracy in %, null when nothing was scored. */
  finalPct: number | null;
  /** Scored rows that carry a reasoning score (samples with reference reasoning). */
  reasoningN: number;
  reasoningCorrect: number;
  /** Reasoning accuracy in %, null when no row has a reasoning score (shown as "_", as in the paper). */
  reasoningPct: number | null;
}

/** Agreement of two judges on one score, over samples both scored. */
export interface Agreement {
  a: string;
  b: string;
  score: "prediction" | "reasoning";
  n: number;
  /** Fraction of samples with equal scores, in %. null when n = 0. */
  percentAgreement: number | null;
  /** Cohen's kappa; null when n = 0 or undefined (both raters constant and chance agreement 1). */
  kappa: number | null;
}

/** A judge-results report. */
export interface JudgeReport {
  datasets: string[];
  judges: string[];
  cells: ReportCell[];
  agreement: Agreement[];
  /** Duplicate (judge, id) rows across the inputs; the last one wins. */
  duplicates: number;
}

/**
 * Cohen's kappa for two binary raters: (po - pe) / (1 - pe). Returns null for empty input or when
 * pe = 1 (both raters gave one constant label: kappa is undefined). Pure.
 */
export function cohenKappa(a: Array<0 | 1>, b: Array<0 | 1>): number | null {
  if (a.length !== b.length) throw new RangeError(`cohenKappa: lengths differ (${a.length} vs ${b.length})`);
  const n = a.length;
  if (n === 0) return null;
  let agree = 0;
  let a1 = 0;
  let b1 = 0;
  for (let i = 0; i < n; i++) {
    if (a[i] === b[i]) agree++;
    a1 += a[i];
    b1 += b[i];
  }
  const po = agree / n;
  const pe = (a1 / n) * (b1 / n) + (1 - a1 / n) * (1 - b1 / n);
  if (pe >= 1) return null;
  return (po - pe) / (1 - pe);
}

/** Builds per dataset × judge scores and pairwise agreement (judges and, if given, human labels). Pure. */
export function buildReport(results: ResultRecord[], opts: { human?: HumanLabel[] } = {}): JudgeReport {
  const datasets: string[] = [];
  const judges: string[] = [];
  const byJudge = new Map<string, Map<string, ResultRecord>>();
  let duplicates = 0;
  const datasetOf = new Map<string, string>();
  const add = (r: ResultRecord) => {
    if (!datasets.includes(r.dataset)) datasets.push(r.dataset);
    if (!judges.includes(r.judge)) judges.push(r.judge);
    let m = byJudge.get(r.judge);
    if (!m) {
      m = new Map();
      byJudge.set(r.judge, m);
    }
    if (m.has(r.id)) duplicates++;
    m.set(r.id, r);
    if (!datasetOf.has(r.id)) datasetOf.set(r.id, r.dataset);
  };
  for (const r of results) add(r);
  if (opts.human) {
    for (const h of opts.human) {
      const dataset = h.dataset ?? datasetOf.get(h.id) ?? "unknown";
      add({
        id: h.id,
        dataset,
        judge: HUMAN,
        reasoning_score: h.reasoning_score,
        prediction_score: h.prediction_score,
        evaluation: "",
        status: h.prediction_score === null && h.reasoning_score === null ? "failed" : "scored",
        error: h.prediction_score === null && h.reasoning_score === null ? "unlabelled" : undefined,
      });
    }
  }
  const cells: ReportCell[] = [];
  for (const d of datasets) {
    for (const j of judges) {
      const rows = [...byJudge.get(j)!.values()].filter((r) => r.dataset === d);
      if (rows.length === 0) continue;
      const scoredRows = rows.filter((r) => r.status === "scored");
      const withPred = scoredRows.filter((r) => r.prediction_score !== null);
      const withReason = scoredRows.filter((r) => r.reasoning_score !== null);
      const failures: Record<string, number> = {};
      for (const r of rows) {
        if (r.status !== "failed") continue;
        const k = (r.error ?? "unknown").split(":")[0];
        failures[k] = (failures[k] ?? 0) + 1;
      }
      const predictionCorrect = withPred.filter((r) => r.prediction_score === 1).length;
      const reasoningCorrect = withReason.filter((r) => r.reasoning_score === 1).length;
      cells.push({
        dataset: d,
        judge: j,
        total: rows.length,
        scored: scoredRows.length,
        failed: rows.length - scoredRows.length,
        failures,
        predictionCorrect,
        finalPct: withPred.length ? (100 * predictionCorrect) / withPred.length : null,
        reasoningN: withReason.length,
        reasoningCorrect,
        reasoningPct: withReason.length ? (100 * reasoningCorrect) / withReason.length : null,
      });
    }
  }
  const agreement: Agreement[] = [];
  for (let i = 0; i < judges.length; i++) {
    for (let k = i + 1; k < judges.length; k++) {
      const A = byJudge.get(judges[i])!;
      const B = byJudge.get(judges[k])!;
      for (const score of ["prediction", "reasoning"] as const) {
        const field = score === "prediction" ? "prediction_score" : "reasoning_score";
        const xa: Array<0 | 1> = [];
        const xb: Array<0 | 1> = [];
        for (const [id, ra] of A) {
          const rb = B.get(id);
          if (!rb || ra.status !== "scored" || rb.status !== "scored") continue;
          const va = ra[field];
          const vb = rb[field];
          if (va === null || vb === null) continue;
          xa.push(va);
          xb.push(vb);
        }
        if (score === "reasoning" && xa.length === 0) continue;
        const agree = xa.filter((v, idx) => v === xb[idx]).length;
        agreement.push({
          a: judges[i],
          b: judges[k],
          score,
          n: xa.length,
          percentAgreement: xa.length ? (100 * agree) / xa.length : null,
          kappa: cohenKappa(xa, xb),
        });
      }
    }
  }
  return { datasets, judges, cells, agreement, duplicates };
}

function label(j: string): string {
  return j === HUMAN ? "Human Evaluation" : judgeLabel(j);
}

function pct(v: number | null): string {
  return v === null ? "_" : `${v.toFixed(2)}%`;
}

/** Judges in column order: as first seen, human labels last. */
function columnJudges(reports: JudgeReport[]): string[] {
  const all: string[] = [];
  for (const r of reports) for (const j of r.judges) if (!all.includes(j)) all.push(j);
  return [...all.filter((j) => j !== HUMAN), ...all.filter((j) => j === HUMAN)];
}

/**
 * Markdown laid out like the paper's Tables 3 and 6: one row per dataset, a Reasoning (%) and a
 * Final (%) column per judge (human last), "_" where no reasoning was scored; then counts and
 * failures per dataset × judge, and the agreement table. Pure.
 */
export function formatReportMarkdown(report: JudgeReport, opts: { title?: string } = {}): string {
  return formatSectionsMarkdown([{ report }], opts);
}

/**
 * Several experiments in one table, as in Table 3 ("Our experiment using SFT" / "... RL + LoRA"):
 * a shared header, then per section a title row followed by its dataset rows; the counts and
 * agreement tables follow, per section. Pure.
 */
export function formatSectionsMarkdown(sections: Array<{ title?: string; report: JudgeReport }>, opts: { title?: string } = {}): string {
  const judges = columnJudges(sections.map((x) => x.report));
  const lines: string[] = [];
  if (opts.title) lines.push(`### ${opts.title}`, "");
  lines.push(`| Dataset | ${judges.map((j) => `${label(j)} Reasoning (%) | ${label(j)} Final (%)`).join(" | ")} |`);
  lines.push(`|---|${judges.map(() => "---:|---:").join("|")}|`);
  for (const { title, report } of sections) {
    const cell = (d: string, j: string) => report.cells.find((c) => c.dataset === d && c.judge === j);
    if (title) lines.push(`| **${title}** |${" |".repeat(2 * judges.length)}`);
    for (const d of report.datasets) {
      const cols = judges.map((j) => {
        const c = cell(d, j);
        return c ? `${pct(c.reasoningPct)} | ${pct(c.finalPct)}` : "_ | _";
      });
      lines.push(`| ${d} | ${cols.join(" | ")} |`);
    }
  }
  if (judges.includes("offline")) lines.push("", "offline = normalised match / similarity threshold, not an LLM judge.");
  const titled = sections.length > 1 || sections.some((x) => x.title);
  lines.push("", `|${titled ? " Section |" : ""} Dataset | Judge | Samples | Scored | Failed | Failures | With reasoning |`, `|${titled ? "---|" : ""}---|---|---:|---:|---:|---|---:|`);
  for (const { title, report } of sections) {
    for (const d of report.datasets) {
      for (const j of judges) {
        const c = report.cells.find((x) => x.dataset === d && x.judge === j);
        if (!c) continue;
        const f = Object.entries(c.failures)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ");
        lines.push(`|${titled ? ` ${title ?? ""} |` : ""} ${d} | ${label(j)} | ${c.total} | ${c.scored} | ${c.failed} | ${f || "-"} | ${c.reasoningN} |`);
      }
    }
  }
  if (sections.some((x) => x.report.agreement.length)) {
    lines.push("", `|${titled ? " Section |" : ""} Judge A | Judge B | Score | Samples | Agreement (%) | Cohen's κ |`, `|${titled ? "---|" : ""}---|---|---|---:|---:|---:|`);
    for (const { title, report } of sections) {
      for (const a of report.agreement) {
        lines.push(
          `|${titled ? ` ${title ?? ""} |` : ""} ${label(a.a)} | ${label(a.b)} | ${a.score === "prediction" ? "Final" : "Reasoning"} | ${a.n} | ${a.percentAgreement === null ? "_" : a.percentAgreement.toFixed(2)} | ${a.kappa === null ? "_" : a.kappa.toFixed(3)} |`,
        );
      }
    }
  }
  const dups = sections.reduce((n, x) => n + x.report.duplicates, 0);
  if (dups) lines.push("", `Note: ${dups} duplicate (judge, id) rows; the last one was used.`);
  return `${lines.join("\n")}\n`;
}
