/** commander argument parsers shared by the subcommands: each names the flag and the expected value in its error. */

/** An integer >= `min` (default 1). */
export function intArg(name: string, min = 1) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}, got "${v}"`);
    return n;
  };
}

/** A finite number >= 0. */
export function numArg(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got "${v}"`);
    return n;
  };
}
