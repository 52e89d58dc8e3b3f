import type { ParityReport } from "./run";

function fmt(x: number | null): string {
  if (x === null) return "-";
  if (!Number.isFinite(x)) return String(x);
  return x === 0 ? "0" : x.toExponential(2);
}

/** Renders a parity report as a table: one row per case and field (max |Δ| vs tolerance), then PASS or FAIL. */
export function formatParityReport(r: ParityReport): string {
  const lines: string[] = [];
  const head = ["case", "field", "max |Δ|", "tol", "result"];
  const rows: string[][] = [];
  for (const [name, c] of Object.entries(r.cases)) {
    const entries = Object.entries(c.fields);
    if (entries.length === 0) rows.push([name, "-", "-", "-", c.status + (c.reason ? ` (${c.reason})` : "")]);
    for (const [f, v] of entries) {
      const res = v.max_abs_diff === null ? `NOT RUN${v.note ? ` (${v.note})` : ""}` : v.max_abs_diff <= v.tol ? "ok" : "FAIL";
      rows.push([name, f, fmt(v.max_abs_diff), fmt(v.tol), res]);
    }
    rows.push([name, "=>", "", "", c.status + (c.reason && entries.length > 0 ? ` (${c.reason})` : "")]);
  }
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (i < 4 ? row[i].length : 0))));
  const line = (row: string[]) => row.map((x, i) => (i < 4 ? x.padEnd(w[i]) : x)).join("  ");
  lines.push(line(head));
  for (const row of rows) lines.push(line(row));
  lines.push(r.overall);
  return lines.join("\n");
}
