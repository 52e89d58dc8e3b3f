// Renders the HTML training report of a RUN_DIR (`rarl report --run`) in headless Chromium and saves a screenshot.
//   TSX_TSCONFIG_PATH=packages/cli/tsconfig.json npx tsx docs/screenshot.ts RUN_DIR docs/report.png [title]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { writeRunReport } from "../packages/cli/src/report/run";

const [run, png, title] = process.argv.slice(2);
if (!run || !png) throw new Error("usage: tsx docs/screenshot.ts RUN_DIR OUT.png [title]");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-shot-"));
const html = writeRunReport({ run, html: path.join(dir, "report.html"), title });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(`file://${html}`);
  await page.screenshot({ path: png, fullPage: true });
} finally {
  await browser.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.stderr.write(`${png}\n`);
