import { defineConfig, type Options } from "tsup";

/**
 * The one build recipe every @rarl package uses: ESM + CJS + .d.ts for Node 20, behind the
 * package's `exports` map. `shims` provides import.meta.url / __dirname in both formats.
 */
export function packageConfig(entry: string[] = ["src/index.ts"], extra: Options = {}) {
  return defineConfig({
    entry,
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    clean: true,
    target: "node20",
    shims: true,
    outDir: "dist",
    ...extra,
  });
}
