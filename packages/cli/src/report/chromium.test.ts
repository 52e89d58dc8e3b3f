import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { synthesize } from "@rarl/datasets";
import { describe, expect, it } from "vitest";
import { runCli } from "../program";
import { buildReportHtml } from "./html";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const have = existsSync(CHROMIUM);
// In CI (.ci/run installs Debian's chromium) the browser must be there; on a dev machine
// without it the test is skipped with this stated reason.
const run = have || process.env.CI ? it : it.skip;

describe("HTML report in headless Chromium", () => {
  run(`renders every chart with data and a non-blank page (needs ${CHROMIUM}; apt-get install chromium)`, async () => {
    const { chromium } = await import("playwright-core");
    const sharp = (await import("sharp")).default;
    const metrics = Array.from({ length: 20 }, (_, i) => ({
      step: i + 1,
      loss: Math.exp(-i / 5),
      lr: 1e-4 * Math.min(1, (i + 1) / 5),
      kl: 0.002 * i,
      completion_length: { mean: 30 + i, max: 50 + i },
      rewards: { format: { mean: i / 20 }, accuracy: { mean: i / 40 }, total: { mean: i / 10 } },
      entropy: 2 - i / 20,
      clip_ratio: { low_mean: 0.01 * (i % 3), high_mean: 0.02, region_mean: 0.02 + 0.01 * (i % 3) },
      cispo_clip_ratio: 0.05,
      frac_reward_zero_std: i / 40,
      completions: { clipped_ratio: 0.5 - i / 40 },
    }));
    const dir = mkdtempSync(path.join(tmpdir(), "rarl-report-"));
    const file = path.join(dir, "report.html");
    writeFileSync(
      file,
      buildReportHtml({
        metrics,
        evals: [{ model: "RARL", prompting: "reasoning", accuracy: 0.7, reasoning: 0.6, n: 50 }],
        samples: [{ step: 20, completion: "<think>x</think><answer>yes</answer>", rewards: { format: 1 } }],
      }),
    );
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const requests: string[] = [];
      page.on("request", (r) => requests.push(r.url()));
      await page.goto(`file://${file}`);
      const charts = await page.$$eval("figure.chart", (figs) =>
        figs.map((f) => {
          const lines = [...f.querySelectorAll("polyline.series")];
          const box = f.querySelector("svg")!.getBoundingClientRect();
          return {
            id: f.id,
            series: lines.length,
            minPoints: Math.min(...lines.map((l) => (l as SVGPolylineElement).points.numberOfItems)),
            visible: box.width > 100 && box.height > 100,
          };
        }),
      );
      expect(charts.map((c) => c.id)).toEqual(["chart-rewards", "chart-kl", "chart-entropy", "chart-clip", "chart-signal", "chart-length", "chart-loss", "chart-lr"]);
      for (const c of charts) {
        expect(c.series).toBeGreaterThan(0);
        expect(c.minPoints).toBe(20);
        expect(c.visible).toBe(true);
      }
      expect(requests.filter((u) => !u.startsWith("file://"))).toEqual([]);
      const png = await page.screenshot({ fullPage: true });
      writeFileSync(path.join(dir, "report.png"), png);
      const stats = await sharp(png).stats();
      // A blank page has (near) zero variance in every channel; charts and text give a lot.
      expect(Math.max(...stats.channels.map((c) => c.stdev))).toBeGreaterThan(10);
      expect(stats.isOpaque).toBe(true);
    } finally {
      await browser.close();
    }
  });

  run(`shows a real toy GRPO run's TRL metrics (entropy, clip ratios, zero-std groups, lengths, per-reward mean/std) and its completions table (needs ${CHROMIUM})`, async () => {
    const { chromium } = await import("playwright-core");
    const dir = mkdtempSync(path.join(tmpdir(), "rarl-report-run-"));
    await synthesize(path.join(dir, "synth"), { n: 6, size: 32, seed: 4 });
    const cfg = {
      trainer: "grpo",
      numGenerations: 4,
      maxCompletionLength: 4,
      progress: false,
      logCompletions: true,
      logCompletionsSteps: 2,
      model: { type: "toy", vocab: 16 },
      data: { format: "rarl", path: "synth/samples.jsonl", limit: 6 },
      rewards: { rewards: [{ use: "format" }, { use: "accuracy" }], scorer: "lexical-f1" },
    };
    writeFileSync(path.join(dir, "grpo.json"), JSON.stringify(cfg));
    const out = path.join(dir, "run");
    const quiet = process.stderr.write.bind(process.stderr);
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      expect(await runCli(["train", "--config", path.join(dir, "grpo.json"), "--out", out, "--max-steps", "4"])).toBe(0);
      expect(await runCli(["report", "--run", out, "--html", path.join(dir, "report.html")])).toBe(0);
    } finally {
      process.stderr.write = quiet;
    }
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"] });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`file://${path.join(dir, "report.html")}`);
      const series = await page.$$eval("polyline.series", (ls) => Object.fromEntries(ls.map((l) => [l.getAttribute("data-key"), (l as SVGPolylineElement).points.numberOfItems])));
      for (const k of [
        "entropy",
        "clip_ratio/low_mean",
        "clip_ratio/high_mean",
        "clip_ratio/region_mean",
        "frac_reward_zero_std",
        "completions/mean_length",
        "completions/clipped_ratio",
        "rewards/format/mean",
        "rewards/format/std",
        "rewards/accuracy/mean",
        "rewards/accuracy/std",
      ]) {
        expect(series[k], k).toBe(4);
      }
      // completions.jsonl at steps 2 and 4: 4 completions each (1 prompt x G = 4), with both rewards as columns.
      const table = await page.$eval("#completions", (t) => ({
        rows: t.querySelectorAll("tbody tr").length,
        head: [...t.querySelectorAll("th")].map((h) => h.textContent),
        visible: t.getBoundingClientRect().height > 50,
      }));
      expect(table.rows).toBe(8);
      expect(table.head).toEqual(["step", "prompt", "completion", "format", "accuracy", "reward", "advantage"]);
      expect(table.visible).toBe(true);
    } finally {
      await browser.close();
    }
  });
});
