import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeFileAtomic } from "./fs";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-fs-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("writeFileAtomic", () => {
  it("writes and replaces a file whole, leaving no temp file", () => {
    const f = path.join(dir, "a.json");
    writeFileAtomic(f, '{"v":1}');
    writeFileAtomic(f, new Uint8Array([123, 125]));
    expect(fs.readFileSync(f, "utf8")).toBe("{}");
    expect(fs.readdirSync(dir)).toEqual(["a.json"]);
  });

  it("throws when the directory does not exist and creates nothing", () => {
    expect(() => writeFileAtomic(path.join(dir, "missing", "b.txt"), "x")).toThrow(/ENOENT/);
    expect(fs.readdirSync(dir)).toEqual(["a.json"]);
  });
});
