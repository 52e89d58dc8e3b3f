import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
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
      expect(charts.map((c) => c.id)).toEqual(["chart-rewards", "chart-kl", "chart-length", "chart-loss", "chart-lr"]);
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
});
