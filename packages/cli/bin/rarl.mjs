#!/usr/bin/env node
// The `rarl` command. A committed launcher, so that `npm ci` can link node_modules/.bin/rarl on a fresh clone
// before anything is built; it loads the built CLI (dist/bin.js) and says what to do when there is none yet.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const built = new URL("../dist/bin.js", import.meta.url);
if (!existsSync(fileURLToPath(built))) {
  process.stderr.write(
    `rarl: the CLI is not built (${fileURLToPath(built)} is missing): run \`npm run build\` first (from the repository root)\n`,
  );
  process.exit(1);
}
await import(built.href);
