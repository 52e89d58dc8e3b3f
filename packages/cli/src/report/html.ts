/**
 * The RARL training report: one static HTML file (inline CSS and SVG, no scripts,
 * no network) built from a run's metrics JSONL, eval results and sample completions.
 * Pure: data in, string out. I/O lives in `writeReport` (report/io.ts).
 */

/** One metrics line as written by the trainers (nested objects are flattened with "/"). */
export type MetricsRow = Record<string, unknown>;

/** One row of the before/after table. */
export interface EvalRow {
  /** Model label, e.g. "warm-up", "SFT baseline", "RARL (GRPO)". */
  model: string;
  /** "reasoning" or "non-reasoning" prompting. */
  prompting: string;
  /** Final-answer accuracy in [0,1]. */
  accuracy: number;
  /** Reasoning score in [0,1], or null where not judged. */
  reasoning: number | null;
  /** Number of samples. */
  n: number;
  /** The judge that scored it (e.g. "offline (not an LLM judge)"). */
  judge?: string;
  /** Test split (e.g. "in-distribution", "out-of-distribution"); shown as a column when any row has one. */
  split?: string;
  /** Standard error of `accuracy` (over seeds, or a bootstrap); shown as ± and as an error bar when given. */
  se?: number;
}

/** A sample completion with its rewards. */
export interface SampleRow {
  step?: number;
  prompt?: string;
  completion: string;
  rewards: Record<string, number>;
}

/** One row of the completions table (the trainer's completions.jsonl with `logCompletions`, TRL log_completions). */
export interface CompletionRow {
  step: number;
  prompt?: string;
  completion: string;
  /** Each reward component's score. */
  rewards: Record<string, number | null>;
  /** The total (weighted) reward. */
  reward?: number | null;
  advantage?: number | null;
}

export interface ReportInput {
  title?: string;
  metrics: MetricsRow[];
  evals?: EvalRow[];
  samples?: SampleRow[];
  /** Sampled completions with each reward (completions.jsonl), shown as a table. */
  completions?: CompletionRow[];
  /** Free-form facts shown at the top (seed, config, backend...). */
  facts?: Record<string, string | number>;
}

export interface ChartSpec {
  id: string;
  title: string;
  /** Flattened metric keys, one line each. */
  keys: string[];
}

/** Flattens nested metric objects: {reward: {format: {mean: 1}}} -> {"reward/format/mean": 1}. */
export function flattenMetrics(row: MetricsRow, prefix = "", out: Record<string, number> = {}): Record<string, number> {
  for (const [k, v] of Object.entries(row)) {
    const key = prefix ? `${prefix}/${k}` : k;
    if (typeof v === "number" && Number.isFinite(v)) out[key] = v;
    else if (v && typeof v === "object" && !Array.isArray(v)) flattenMetrics(v as MetricsRow, key, out);
  }
  return out;
}

const CHARTS: Array<{ id: string; title: string; match: (k: string) => boolean }> = [
  { id: "rewards", title: "Rewards per component (mean)", match: (k) => /^rewards?[/_.]/.test(k) && /mean$/.test(k) },
  { id: "reward-std", title: "Rewards per component (std)", match: (k) => /^rewards\/.+\/std$/.test(k) },
  { id: "kl", title: "KL to the reference policy", match: (k) => /^kl($|[/_.]mean$)/.test(k) },
  { id: "entropy", title: "Per-token entropy of the policy", match: (k) => k === "entropy" },
  { id: "clip", title: "Clipped share (clip_ratio/*, cispo_clip_ratio)", match: (k) => /^clip_ratio\/(low|high|region)_mean$/.test(k) || k === "cispo_clip_ratio" },
  { id: "signal", title: "Groups without signal and truncated completions", match: (k) => k === "frac_reward_zero_std" || k === "completions/clipped_ratio" },
  {
    id: "length",
    title: "Completion length (tokens)",
    match: (k) => /^completion[_/.]?len(gth)?([/_.](mean|max))?$/.test(k) || /^completions\/(mean|min|max)(_terminated)?_length$/.test(k),
  },
  { id: "is-ratio", title: "vLLM importance-sampling ratio", match: (k) => /^sampling\/importance_sampling_ratio\/(min|mean|max)$/.test(k) },
  { id: "loss", title: "Loss", match: (k) => k === "loss" },
  { id: "lr", title: "Learning rate", match: (k) => k === "lr" || k === "learning_rate" },
];

/** Decides which charts to draw from the keys present in the metrics. */
export function planCharts(rows: Array<Record<string, number>>): ChartSpec[] {
  const keys = new Set<string>();
  for (const r of rows) for (const k of Object.keys(r)) keys.add(k);
  const specs: ChartSpec[] = [];
  for (const c of CHARTS) {
    const ks = [...keys].filter(c.match).sort();
    if (ks.length) specs.push({ id: c.id, title: c.title, keys: ks });
  }
  return specs;
}

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"];

function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fmt(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  return a >= 1000 || a < 0.01 ? x.toExponential(2) : x.toPrecision(3);
}

/** Renders one line chart as inline SVG. Every series is a <polyline> with data-points = its point count. */
export function lineChartSvg(spec: ChartSpec, rows: Array<Record<string, number>>, width = 560, height = 240): string {
  const m = { l: 56, r: 12, t: 12, b: 28 };
  const series = spec.keys.map((k) => ({
    key: k,
    pts: rows
      .map((r, i) => [typeof r.step === "number" ? r.step : i + 1, r[k]] as [number, number | undefined])
      .filter((p): p is [number, number] => typeof p[1] === "number" && Number.isFinite(p[1])),
  }));
  const all = series.flatMap((s) => s.pts);
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) {
    y0 -= 0.5;
    y1 += 0.5;
  }
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (width - m.l - m.r);
  const sy = (y: number) => height - m.b - ((y - y0) / (y1 - y0)) * (height - m.t - m.b);
  const grid = [0, 0.5, 1]
    .map((f) => {
      const y = y0 + f * (y1 - y0);
      return `<line x1="${m.l}" x2="${width - m.r}" y1="${sy(y)}" y2="${sy(y)}" class="grid"/><text x="${m.l - 4}" y="${sy(y) + 4}" text-anchor="end">${fmt(y)}</text>`;
    })
    .join("");
  const lines = series
    .map((s, i) => {
      const d = s.pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
      return `<polyline class="series" data-key="${esc(s.key)}" data-points="${s.pts.length}" fill="none" stroke="${PALETTE[i % PALETTE.length]}" stroke-width="2" points="${d}"/>`;
    })
    .join("");
  const legend = series
    .map((s, i) => `<span class="key"><i style="background:${PALETTE[i % PALETTE.length]}"></i>${esc(s.key)}</span>`)
    .join(" ");
  return `<figure class="chart" id="chart-${spec.id}" data-series="${series.length}"><figcaption>${esc(spec.title)}</figcaption>
<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${esc(spec.title)}">${grid}
<text x="${width / 2}" y="${height - 6}" text-anchor="middle">step (${fmt(x0)}–${fmt(x1)})</text>${lines}</svg>
<div class="legend">${legend}</div></figure>`;
}

/** A horizontal bar for an accuracy in [0, 1] with an error bar of ± 2 s.e. (inline SVG). */
export function errorBarSvg(acc: number, se: number): string {
  const W = 160;
  const x = (v: number) => (Math.min(1, Math.max(0, v)) * W).toFixed(1);
  return `<svg class="eb" width="${W}" height="12" viewBox="0 0 ${W} 12" role="img" aria-label="${(100 * acc).toFixed(1)}% ± ${(200 * se).toFixed(1)}"><rect x="0" y="2" width="${x(acc)}" height="8" fill="#93c5fd"/><line x1="${x(acc - 2 * se)}" x2="${x(acc + 2 * se)}" y1="6" y2="6" stroke="#1e3a8a" stroke-width="1.5"/><line x1="${x(acc - 2 * se)}" x2="${x(acc - 2 * se)}" y1="2" y2="10" stroke="#1e3a8a"/><line x1="${x(acc + 2 * se)}" x2="${x(acc + 2 * se)}" y1="2" y2="10" stroke="#1e3a8a"/></svg>`;
}

function evalTable(rows: EvalRow[]): string {
  const pct = (x: number | null) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
  const withSplit = rows.some((r) => r.split !== undefined);
  const withSe = rows.some((r) => typeof r.se === "number");
  const body = rows
    .map(
      (r) =>
        `<tr><td>${esc(r.model)}</td>${withSplit ? `<td>${esc(r.split ?? "")}</td>` : ""}<td>${esc(r.prompting)}</td><td>${pct(r.accuracy)}${typeof r.se === "number" ? ` ± ${(100 * r.se).toFixed(1)}` : ""}</td>${withSe ? `<td>${typeof r.se === "number" ? errorBarSvg(r.accuracy, r.se) : ""}</td>` : ""}<td>${pct(r.reasoning)}</td><td>${r.n}</td><td>${esc(r.judge ?? "")}</td></tr>`,
    )
    .join("");
  return `<table id="eval"><thead><tr><th>model</th>${withSplit ? "<th>split</th>" : ""}<th>prompting</th><th>final answer${withSe ? " (± s.e.)" : ""}</th>${withSe ? "<th>± 2 s.e.</th>" : ""}<th>reasoning</th><th>n</th><th>judge</th></tr></thead><tbody>${body}</tbody></table>`;
}

function samplesTable(rows: SampleRow[]): string {
  const body = rows
    .map((s) => {
      const rw = Object.entries(s.rewards)
        .map(([k, v]) => `${esc(k)}=${fmt(v)}`)
        .join(", ");
      return `<tr><td>${s.step ?? ""}</td><td><pre>${esc(s.prompt ?? "")}</pre></td><td><pre>${esc(s.completion)}</pre></td><td>${rw}</td></tr>`;
    })
    .join("");
  return `<table id="samples"><thead><tr><th>step</th><th>prompt</th><th>completion</th><th>rewards</th></tr></thead><tbody>${body}</tbody></table>`;
}

function completionsTable(rows: CompletionRow[]): string {
  const names = [...new Set(rows.flatMap((r) => Object.keys(r.rewards)))];
  const num = (x: number | null | undefined) => (typeof x === "number" && Number.isFinite(x) ? fmt(x) : "–");
  const head = `<tr><th>step</th><th>prompt</th><th>completion</th>${names.map((n) => `<th>${esc(n)}</th>`).join("")}<th>reward</th><th>advantage</th></tr>`;
  const body = rows
    .map(
      (r) =>
        `<tr><td>${r.step}</td><td><pre>${esc(r.prompt ?? "")}</pre></td><td><pre>${esc(r.completion)}</pre></td>${names.map((n) => `<td>${num(r.rewards[n])}</td>`).join("")}<td>${num(r.reward)}</td><td>${num(r.advantage)}</td></tr>`,
    )
    .join("");
  return `<table id="completions" data-rows="${rows.length}"><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

/** Builds the complete report page. */
export function buildReportHtml(input: ReportInput): string {
  const rows = input.metrics.map((r) => flattenMetrics(r));
  const charts = planCharts(rows);
  const facts = Object.entries(input.facts ?? {})
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
    .join("");
  const title = input.title ?? "RARL training report";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111;background:#fff}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:16px}
figure.chart{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px;background:#fafafa}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font-size:11px;fill:#444}.grid{stroke:#ddd}
.legend{font-size:12px}.key{margin-right:10px;white-space:nowrap}.key i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
table{border-collapse:collapse;margin-top:8px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f5f9}pre{margin:0;white-space:pre-wrap;max-width:520px;font-size:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:600}dd{margin:0}
</style></head><body>
<h1>${esc(title)}</h1>
${facts ? `<dl id="facts">${facts}</dl>` : ""}
<h2>Training curves</h2>
<div class="charts">${charts.map((c) => lineChartSvg(c, rows)).join("\n")}</div>
${input.evals?.length ? `<h2>Accuracy and reasoning, before and after</h2>${evalTable(input.evals)}` : ""}
${input.samples?.length ? `<h2>Sample completions</h2>${samplesTable(input.samples)}` : ""}
${input.completions?.length ? `<h2>Completions with each reward (logCompletions)</h2>${completionsTable(input.completions)}` : ""}
</body></html>
`;
}
