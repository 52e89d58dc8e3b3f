import { describe, expect, it } from "vitest";
import { buildProgram } from "./program";

describe("rarl program", () => {
  it("prints help naming the tool", () => {
    const help = buildProgram().helpInformation();
    expect(help).toContain("Usage: rarl");
  });
});
