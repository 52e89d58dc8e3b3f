// Issue 16, item 6: hostile input to the CLI, each case reproduced as a user would type it.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runCli } from "../program";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-cli-hostile-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function capture(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((c: any) => {
    out += String(c);
    return true;
  });
  const e = vi.spyOn(process.stderr, "write").mockImplementation((c: any) => {
    err += String(c);
    return true;
  });
  const saved = process.exitCode;
  try {
    const code = await runCli(args);
    return { code, out, err };
  } finally {
    process.exitCode = saved;
    o.mockRestore();
    e.mockRestore();
  }
}

const pred = (id: string, prediction = "yes") => JSON.stringify({ id, dataset: "Ours", question: "Is it?", reference: "yes", prediction });

describe("outputs that are inputs or folders", () => {
  it("judge --out equal to --predictions (same file, other spelling or a link) is refused and the input kept", async () => {
    const preds = path.join(dir, "preds.jsonl");
    const text = `${pred("a")}\n${pred("b", "no")}\n`;
    fs.writeFileSync(preds, text);
    fs.symlinkSync(preds, path.join(dir, "preds-link.jsonl"));
    for (const out of [preds, path.join(dir, ".", "sub", "..", "preds.jsonl"), path.join(dir, "preds-link.jsonl")]) {
      fs.mkdirSync(path.join(dir, "sub"), { recursive: true });
      const r = await capture(["judge", "--predictions", preds, "--judge", "offline", "--out", out, "--quiet", "--no-cache"]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/--out .* is the same file as --predictions .*preds\.jsonl; writing it would overwrite the input/);
      expect(fs.readFileSync(preds, "utf8")).toBe(text);
    }
  });

  it("data export onto its own input is refused and the input kept", async () => {
    const ds = path.join(dir, "ds");
    fs.mkdirSync(ds, { recursive: true });
    const file = path.join(ds, "samples.jsonl");
    const text = `${JSON.stringify({ id: "e", image: { bytes: [1, 2, 3] }, question: "q?", answer: "yes" })}\n`;
    fs.writeFileSync(file, text);
    const r = await capture(["data", "export", "--format", "jsonl", file, "--verify-images", "none", "--out", file]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/--out .*samples\.jsonl is the same file as <path> .*samples\.jsonl/);
    const r2 = await capture(["data", "export", "--format", "jsonl", ds, "--verify-images", "none", "--out", file]);
    expect(r2.code).toBe(1);
    expect(r2.err).toMatch(/is a file inside <path>/);
    expect(fs.readFileSync(file, "utf8")).toBe(text);
    expect(fs.existsSync(path.join(ds, "images"))).toBe(false);
  });

  it("--out pointing at a folder is a typed error naming the path, not a bare EISDIR", async () => {
    const preds = path.join(dir, "p2.jsonl");
    fs.writeFileSync(preds, `${pred("a")}\n`);
    const folder = path.join(dir, "a-folder");
    fs.mkdirSync(folder);
    const r = await capture(["judge", "--predictions", preds, "--judge", "offline", "--out", folder, "--quiet", "--no-cache"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`--out ${folder} is a folder; expected a file path`);
    expect(r.err).not.toMatch(/EISDIR/);
    const ds = path.join(dir, "ds2");
    fs.mkdirSync(ds);
    fs.writeFileSync(path.join(ds, "s.jsonl"), `${JSON.stringify({ id: "e", image: { bytes: [1] }, question: "q?", answer: "yes" })}\n`);
    const r2 = await capture(["data", "export", "--format", "jsonl", path.join(ds, "s.jsonl"), "--verify-images", "none", "--out", folder]);
    expect(r2.code).toBe(1);
    expect(r2.err).toContain(`--out ${folder} is a folder; expected a file path`);
  });
});
