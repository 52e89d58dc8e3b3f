import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const root = fileURLToPath(new URL(".", import.meta.url));
const names = ["core", "model", "grpo", "rewards", "prompts", "judge", "datasets", "cli"];

/** Shared vitest config: workspace packages resolve to their sources, so tests need no build. */
export default defineConfig({
  resolve: {
    alias: names.map((n) => ({ find: new RegExp(`^@rarl/${n}$`), replacement: `${root}packages/${n}/src/index.ts` })),
  },
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 1,
    env: { RARL_BACKEND: process.env.RARL_BACKEND ?? "wasm", RARL_LOG_LEVEL: process.env.RARL_LOG_LEVEL ?? "warn" },
  },
});
