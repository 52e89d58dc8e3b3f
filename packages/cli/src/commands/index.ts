import type { Command } from "commander";
import * as parity from "./parity";
import * as reward from "./reward";

/**
 * Every `rarl` subcommand lives in its own module under commands/ and exports
 * `register(program)`. Add one line here per subcommand.
 */
export const commandModules: Array<{ register(program: Command): void }> = [];
commandModules.push(parity);
commandModules.push(reward);
