// Hostile image paths: symbolic links that lead out of the dataset root are refused wherever an image is read.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { DatasetError } from "./errors";
import { imageInput } from "./image";
import { loadDataset } from "./load";
import * as P from "./paths";
const realImagePath = (P as any).realImagePath ?? (() => { throw new Error("absent"); });
import { exportSamples } from "./stats";
import { tmpDir, writePng, writeText } from "./test-helpers";

/** DS/samples.jsonl with one good image and images/evil.png -> a secret file outside DS. */
async function hostileDataset() {
  const top = tmpDir("rarl-ds-link-");
  const ds = path.join(top, "DS");
  const secret = path.join(top, "secret.txt");
  fs.writeFileSync(secret, "root:x:0:0:SECRET\n");
  await writePng(path.join(ds, "images", "ok.png"));
  fs.symlinkSync(secret, path.join(ds, "images", "evil.png"));
  const row = (id: string, image: string) => JSON.stringify({ id, image, question: "Is this a CT?", answer: "yes" });
  writeText(path.join(ds, "samples.jsonl"), `${row("good", "images/ok.png")}\n${row("evil", "images/evil.png")}\n`);
  return { top, ds, secret, file: path.join(ds, "samples.jsonl") };
}

describe("image paths through symbolic links", () => {
  it("realImagePath follows links: inside the root is fine, outside throws DATASET_PATH_ESCAPE", async () => {
    const { ds, top } = await hostileDataset();
    expect(realImagePath(ds, "images/ok.png")).toBe(fs.realpathSync(path.join(ds, "images", "ok.png")));
    fs.symlinkSync(path.join(ds, "images", "ok.png"), path.join(ds, "images", "alias.png"));
    expect(realImagePath(ds, "images/alias.png")).toBe(fs.realpathSync(path.join(ds, "images", "ok.png")));
    expect(realImagePath(ds, "images/none.png")).toBeNull();
    expect(() => realImagePath(ds, "images/evil.png", { file: "f.jsonl", row: 2 })).toThrow(/f\.jsonl, row 2: .*outside the dataset root/);
    // a linked folder that leaves the root
    fs.mkdirSync(path.join(top, "elsewhere"));
    await writePng(path.join(top, "elsewhere", "x.png"));
    fs.symlinkSync(path.join(top, "elsewhere"), path.join(ds, "linked"));
    try {
      realImagePath(ds, "linked/x.png");
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(DatasetError);
      expect((e as DatasetError).code).toBe("DATASET_PATH_ESCAPE");
    }
  });

  it("loading with verifyImages exists/header names the row; skip mode keeps the good row", async () => {
    const { file } = await hostileDataset();
    for (const verify of ["exists", "header"] as const) {
      await expect(loadDataset({ format: "jsonl", path: file, verifyImages: verify }).toArray()).rejects.toThrow(/samples\.jsonl, row 2: .*outside the dataset root/);
      const ds = loadDataset({ format: "jsonl", path: file, verifyImages: verify, onError: "skip" });
      expect((await ds.toArray()).map((s) => s.id)).toEqual(["good"]);
      expect(ds.skipped.map((s) => s.code)).toEqual(["DATASET_PATH_ESCAPE"]);
    }
  });

  it("export never copies a linked file from outside the root, even with verifyImages none", async () => {
    const { file, top, secret } = await hostileDataset();
    const out = path.join(top, "export", "samples.jsonl");
    for (const verify of ["none", "exists"] as const) {
      const ds = loadDataset({ format: "jsonl", path: file, verifyImages: verify });
      await expect(exportSamples(ds, out)).rejects.toThrow(/outside the dataset root/);
      expect(fs.existsSync(path.join(top, "export", "images", "images", "evil.png"))).toBe(false);
    }
    const copied = fs.existsSync(path.join(top, "export")) ? fs.readdirSync(path.join(top, "export"), { recursive: true }) : [];
    for (const f of copied) {
      const p = path.join(top, "export", String(f));
      if (fs.statSync(p).isFile()) expect(fs.readFileSync(p, "utf8")).not.toContain("SECRET");
    }
    expect(fs.readFileSync(secret, "utf8")).toContain("SECRET");
  });

  it("imageInput (what training reads) refuses the link too", async () => {
    const { ds } = await hostileDataset();
    const sample = { id: "evil", image: { path: "images/evil.png" }, question: "q", answer: "a", answer_type: "open" } as any;
    expect(() => imageInput(sample, ds)).toThrow(/outside the dataset root/);
    expect(imageInput({ ...sample, image: { path: "images/ok.png" } }, ds)).toBe(fs.realpathSync(path.join(ds, "images", "ok.png")));
  });
});

describe("export never writes through a symbolic link in its output folder", () => {
  it("replaces a link planted at an image's place; refuses a linked folder that leads out", async () => {
    const top = tmpDir("rarl-ds-outlink-");
    const ds = path.join(top, "DS");
    await writePng(path.join(ds, "images", "ok.png"));
    writeText(path.join(ds, "s.jsonl"), `${JSON.stringify({ id: "good", image: "images/ok.png", question: "q?", answer: "yes" })}\n`);
    const victim = path.join(top, "victim.txt");
    fs.writeFileSync(victim, "precious");
    const out = path.join(top, "out");
    fs.mkdirSync(path.join(out, "images", "images"), { recursive: true });
    fs.symlinkSync(victim, path.join(out, "images", "images", "ok.png"));
    await exportSamples(loadDataset({ format: "jsonl", path: path.join(ds, "s.jsonl") }), path.join(out, "s.jsonl"));
    expect(fs.readFileSync(victim, "utf8")).toBe("precious");
    expect(fs.lstatSync(path.join(out, "images", "images", "ok.png")).isSymbolicLink()).toBe(false);
    expect(fs.readFileSync(path.join(out, "images", "images", "ok.png"))).toEqual(fs.readFileSync(path.join(ds, "images", "ok.png")));

    const out2 = path.join(top, "out2");
    const elsewhere = path.join(top, "elsewhere");
    fs.mkdirSync(elsewhere);
    fs.mkdirSync(out2);
    fs.symlinkSync(elsewhere, path.join(out2, "images"));
    await expect(exportSamples(loadDataset({ format: "jsonl", path: path.join(ds, "s.jsonl") }), path.join(out2, "s.jsonl"))).rejects.toThrow(/outside the export folder/);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
  });
});
