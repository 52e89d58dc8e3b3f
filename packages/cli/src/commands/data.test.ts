import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it, } from "vitest";
import { captureCli } from "../testing/capture";

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-cli-data-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const capture = captureCli;

describe("rarl data", () => {
  it("synth --splits: named splits of their own images, families and styles; bad specs are rejected", async () => {
    const out = path.join(dir, "synth-splits");
    const s = await capture(["data", "synth", "--seed", "2", "--size", "48", "--out", out, "--splits", "base:6:O,val:3:T,shifted:3:T:lesion=170;gamma=1.6;grain=0.3"]);
    expect(s.code).toBe(0);
    expect(s.err).toMatch(/wrote 24 samples \(12 base \/ 6 val \/ 6 shifted\) on 12 images/);
    const rows = fs.readFileSync(path.join(out, "samples.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(new Set(rows.filter((r) => r.split === "base").map((r) => r.extra.family))).toEqual(new Set(["O"]));
    expect(new Set(rows.filter((r) => r.split !== "base").map((r) => r.extra.family))).toEqual(new Set(["T"]));
    const bad = await capture(["data", "synth", "--out", path.join(dir, "bad"), "--splits", "a:2:X"]);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/family must be O, T or all/);
    const badStyle = await capture(["data", "synth", "--out", path.join(dir, "bad"), "--style", "blur=2"]);
    expect(badStyle.code).not.toBe(0);
    expect(badStyle.err).toMatch(/unknown style key "blur"/);
  });

  it("synth writes images + samples.jsonl; stats --json prints exactly one JSON object", async () => {
    const out = path.join(dir, "synth");
    const s = await capture(["data", "synth", "--n", "20", "--seed", "1", "--size", "48", "--out", out]);
    expect(s.code).toBe(0);
    expect(s.err).toMatch(/wrote 20 samples/);
    expect(fs.readFileSync(path.join(out, "samples.jsonl"), "utf8").trim().split("\n")).toHaveLength(20);
    const r = await capture(["data", "stats", "--format", "rarl", path.join(out, "samples.jsonl"), "--json"]);
    expect(r.code).toBe(0);
    const obj = JSON.parse(r.out);
    expect(Object.keys(obj).sort()).toEqual(["by_answer_type", "by_modality", "by_split", "skipped", "total"]);
    expect(obj.total).toBe(20);
    expect(obj.skipped).toBe(0);
    expect(obj.by_split.train + obj.by_split.test).toBe(20);
    const h = await capture(["data", "stats", "--format", "rarl", out]);
    expect(h.out).toMatch(/20 samples, 0 skipped/);
    expect(h.out).toMatch(/by modality:/);
  });

  it("stats counts and reports skipped rows; export writes JSONL that loads back", async () => {
    const d = path.join(dir, "slake");
    fs.mkdirSync(path.join(d, "imgs/xmlab1"), { recursive: true });
    fs.writeFileSync(path.join(d, "imgs/xmlab1/source.jpg"), await sharp({ create: { width: 4, height: 4, channels: 3, background: "#888" } }).jpeg().toBuffer());
    const rec = (qid: number, o: object = {}) => ({ img_id: 1, img_name: "xmlab1/source.jpg", question: "Is this a CT?", answer: "Yes", q_lang: "en", modality: "CT", answer_type: "CLOSED", qid, ...o });
    fs.writeFileSync(path.join(d, "train.json"), JSON.stringify([rec(1), rec(2, { img_name: "../../etc/x.jpg" }), rec(3, { q_lang: "zh" })]));
    fs.writeFileSync(path.join(d, "test.json"), JSON.stringify([rec(4, { answer_type: "OPEN", answer: "CT" })]));
    const r = await capture(["data", "stats", "--format", "slake", d, "--json"]);
    expect(JSON.parse(r.out)).toEqual({ total: 2, by_split: { train: 1, test: 1 }, by_answer_type: { closed: 1, open: 1 }, by_modality: { CT: 2 }, skipped: 1 });
    expect(r.err).toMatch(/train\.json, row 2: image path "\.\.\/\.\.\/etc\/x\.jpg" escapes the dataset root/);
    expect(r.err).toMatch(/filtered 1 row/);

    const outFile = path.join(dir, "export", "samples.jsonl");
    fs.mkdirSync(path.dirname(outFile), { recursive: true });
    const bad = await capture(["data", "export", "--format", "slake", d, "--out", outFile]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/rarl: .*train\.json, row 2/);
    const ok = await capture(["data", "export", "--format", "slake", d, "--out", outFile, "--on-error", "skip"]);
    expect(ok.code).toBe(0);
    const back = await capture(["data", "stats", "--format", "jsonl", outFile, "--json"]);
    expect(JSON.parse(back.out)).toMatchObject({ total: 2, skipped: 0, by_modality: { CT: 2 } });
  });

  it("export refuses an image that is a symbolic link out of the dataset root (ln -s /etc/passwd DS/images/evil.png)", async () => {
    const ds = path.join(dir, "linkds");
    fs.mkdirSync(path.join(ds, "images"), { recursive: true });
    const secret = path.join(dir, "passwd");
    fs.writeFileSync(secret, "root:x:0:0:SECRET\n");
    fs.symlinkSync(secret, path.join(ds, "images", "evil.png"));
    fs.writeFileSync(path.join(ds, "samples.jsonl"), `${JSON.stringify({ id: "e", image: "images/evil.png", question: "q?", answer: "yes" })}\n`);
    const out = path.join(dir, "link-export", "samples.jsonl");
    const r = await capture(["data", "export", "--format", "jsonl", path.join(ds, "samples.jsonl"), "--verify-images", "exists", "--out", out]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/samples\.jsonl, row 1: image path "images\/evil\.png" resolves to .*outside the dataset root/);
    expect(fs.existsSync(path.join(dir, "link-export", "images", "images", "evil.png"))).toBe(false);
    expect(fs.existsSync(out)).toBe(false);
  });

  it("rejects an unknown format", async () => {
    const r = await capture(["data", "stats", "--format", "nope", dir]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/nope/);
  });
});
