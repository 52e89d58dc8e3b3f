#!/usr/bin/env node
import { runCli } from "./program";

runCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`rarl: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  },
);
