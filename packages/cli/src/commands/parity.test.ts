import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fixturesDir } from "@rarl/core";
import { afterEach, describe, expect, it } from "vitest";
import { captureCli } from "../testing/capture";

function fixture(): string {
  return path.join(fixturesDir(), "qwen2vl-tiny");
}
const FX = fixture();

const run = captureCli;

/** A copy of the fixture (big files symlinked) whose outputs.json has one prompt's user text changed. */
function perturbedFixture(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "parity-cli-"));
  for (const f of fs.readdirSync(FX)) if (f !== "reference") fs.symlinkSync(path.join(FX, f), path.join(dir, f));
  fs.mkdirSync(path.join(dir, "reference"));
  for (const f of fs.readdirSync(path.join(FX, "reference"))) {
    if (f !== "outputs.json") fs.symlinkSync(path.join(FX, "reference", f), path.join(dir, "reference", f));
  }
  const j = JSON.parse(fs.readFileSync(path.join(FX, "reference", "outputs.json"), "utf8"));
  j.prompts.text_only.messages[0][1].content[0].text = "Is there an abnormality in the right lung?";
  fs.writeFileSync(path.join(dir, "reference", "outputs.json"), JSON.stringify(j));
  return dir;
}

describe("rarl parity", () => {
  const tmp: string[] = [];
  afterEach(() => {
    for (const d of tmp.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it("--json prints one object; the processor case passes on the fixture with exit code 0", async () => {
    const { code, out } = await run(["parity", FX, "--json", "--case", "processor"]);
    const r = JSON.parse(out);
    expect(r.overall).toBe("PASS");
    expect(r.cases.processor.status).toBe("PASS");
    expect(r.cases.processor.fields["image_prompt.pixel_values"]).toEqual({ max_abs_diff: 0, tol: 1e-5 });
    expect(code).toBe(0);
  });

  it("a reference that does not match gives FAIL, a table row naming the field, and exit code 1", async () => {
    const dir = perturbedFixture();
    tmp.push(dir);
    const { code, out } = await run(["parity", dir, "--case", "processor"]);
    expect(out).toMatch(/processor\s+text_only\.rendered\s+1\.00e\+0\s+0\s+FAIL/);
    expect(out).toMatch(/processor\s+text_only\.input_ids\s+\S+\s+0\s+FAIL/);
    expect(out).toMatch(/processor\s+image_prompt\.input_ids\s+0\s+0\s+ok/);
    expect(out.trim().split("\n").at(-1)).toBe("FAIL");
    expect(code).toBe(1);
  });

  it("an unknown case is NOT RUN and fails", async () => {
    const { code, out } = await run(["parity", FX, "--json", "--case", "no_such_case"]);
    expect(JSON.parse(out).cases.no_such_case.status).toBe("NOT RUN");
    expect(code).toBe(1);
  });
});
