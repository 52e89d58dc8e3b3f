import { describe, expect, it, vi } from "vitest";
import { buildProgram, runCli } from "../program";

// Building the program and printing its help must not import any command module (they load tfjs, the model, ...).
vi.mock("./train", () => {
  throw new Error("./train was imported");
});
vi.mock("./data", () => {
  throw new Error("./data was imported");
});
vi.mock("./judge", () => {
  throw new Error("./judge was imported");
});
vi.mock("./report", () => {
  throw new Error("./report was imported");
});
vi.mock("./parity", () => {
  throw new Error("./parity was imported");
});
vi.mock("./reward", () => {
  throw new Error("./reward was imported");
});
vi.mock("./generate", () => {
  throw new Error("./generate was imported");
});
vi.mock("./eval", () => ({
  register: (program: import("commander").Command) =>
    program
      .command("eval")
      .description("the real eval module (mocked)")
      .option("--only-here", "an option only the real module has")
      .action((o: { onlyHere?: boolean }) => {
        process.stdout.write(`eval ran ${o.onlyHere === true}\n`);
      }),
}));

async function capture(args: string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const wo = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => out.push(String(s)) > 0) as typeof process.stdout.write;
  try {
    return { code: await runCli(args), out: out.join("") };
  } finally {
    process.stdout.write = wo;
  }
}

describe("lazy command registry", () => {
  it("lists every subcommand without importing its module", async () => {
    const help = buildProgram().helpInformation();
    for (const c of ["train", "generate", "eval", "judge", "report", "parity", "data", "reward", "help"]) expect(help).toMatch(new RegExp(`\\n  ${c}\\b`));
    const r = await capture(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("Usage: rarl");
  });

  it("imports a command's module when it runs, and passes its arguments through", async () => {
    expect((await capture(["eval", "--only-here"])).out).toBe("eval ran true\n");
    const h = await capture(["help", "eval"]);
    expect(h.code).toBe(0);
    expect(h.out).toContain("--only-here");
    const h2 = await capture(["eval", "--help"]);
    expect(h2.out).toContain("an option only the real module has");
  });

  it("a command whose module fails to load reports it and exits 1", async () => {
    const err: string[] = [];
    const we = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => err.push(String(s)) > 0) as typeof process.stderr.write;
    try {
      expect(await runCli(["train", "--config", "x.json"])).toBe(1);
    } finally {
      process.stderr.write = we;
    }
    expect(err.join("")).toMatch(/^rarl: .*(mocking a module|\.\/train was imported)/);
  });
});
