// A training process for crash tests (run with `node --import tsx train-child.ts SPEC.json`): runTrain, the
// library behind `rarl train`, with the toy policy; model.type "slow-save-toy" makes every adapter save (inside
// each checkpoint write, and the final adapter) print "saving <dir>" and then hold the process for `slowSaveMs`,
// so that a test can SIGKILL it while a checkpoint is half written. Prints "done <TrainResult JSON>" at the end.
import fs from "node:fs";
import { POLICY_FACTORIES, runTrain } from "../run";

interface Spec {
  config: Record<string, unknown>;
  configDir: string;
  out: string;
  maxSteps?: number;
  resume?: boolean;
  slowSaveMs?: number;
}

const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8")) as Spec;
const toy = POLICY_FACTORIES.toy;
POLICY_FACTORIES["slow-save-toy"] = async (m, ctx) => {
  const built = await toy({ ...m, type: "toy" }, ctx);
  const save = built.policy.saveAdapter.bind(built.policy);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  built.policy.saveAdapter = (dir: string) => {
    fs.writeSync(1, `saving ${dir}\n`);
    save(dir);
    Atomics.wait(pause, 0, 0, spec.slowSaveMs ?? 0);
  };
  return built;
};
const res = await runTrain({ config: spec.config, configDir: spec.configDir, out: spec.out, maxSteps: spec.maxSteps, resume: spec.resume, handleSigint: false });
fs.writeSync(1, `done ${JSON.stringify(res)}\n`);
