import fs from "node:fs";
import path from "node:path";
import { RarlError } from "@rarl/core";

/**
 * An output path given on the command line cannot be used: it is a folder where a file is expected
 * (OUTPUT_IS_DIR), or it is one of the command's own inputs (OUTPUT_IS_INPUT). `details.flag` and `details.path` name it.
 */
export class OutputPathError extends RarlError {}

/**
 * The real location `p` has or would have: symbolic links followed for the part that exists, the rest appended
 * (so two spellings of one file, or a link and its target, compare equal before the file exists).
 */
export function realLocation(p: string): string {
  const abs = path.resolve(p);
  const rest: string[] = [];
  let cur = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync(cur), ...rest.reverse());
    } catch {
      const up = path.dirname(cur);
      if (up === cur) return abs;
      rest.push(path.basename(cur));
      cur = up;
    }
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Checks an output file flag before any work: not an existing folder, and not one of `inputs` (compared by real
 * path). An input that is a folder also protects the existing files inside it. Throws {@link OutputPathError}.
 */
export function checkOutputFile(flag: string, out: string, inputs: Array<{ flag: string; path: string }> = []): void {
  if (isDir(out)) {
    throw new OutputPathError(`${flag} ${out} is a folder; expected a file path (e.g. ${path.join(out, "results.jsonl")})`, {
      code: "OUTPUT_IS_DIR",
      details: { flag, path: out },
    });
  }
  const real = realLocation(out);
  for (const i of inputs) {
    const inReal = realLocation(i.path);
    const inside = isDir(i.path) && fs.existsSync(out) && !path.relative(inReal, real).startsWith("..") && !path.isAbsolute(path.relative(inReal, real));
    if (real === inReal || inside) {
      throw new OutputPathError(
        `${flag} ${out} is ${real === inReal ? "the same file as" : "a file inside"} ${i.flag} ${i.path}; writing it would overwrite the input. Choose another ${flag}`,
        { code: "OUTPUT_IS_INPUT", details: { flag, path: out, input: i.path, inputFlag: i.flag } },
      );
    }
  }
}
