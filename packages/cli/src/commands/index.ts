import type { Command } from "commander";
import * as data from "./data";
import * as parity from "./parity";
import * as judge from "./judge";
import * as report from "./report";
import * as reward from "./reward";
import * as train from "./train";

/**
 * Every `rarl` subcommand lives in its own module under commands/ and exports
 * `register(program)`. Add one line here per subcommand.
 */
export const commandModules: Array<{ register(program: Command): void }> = [];
commandModules.push(judge, report);
commandModules.push(parity);
commandModules.push(reward);
commandModules.push(data);
commandModules.push(train);
