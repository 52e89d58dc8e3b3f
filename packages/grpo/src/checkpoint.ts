import fs from "node:fs";
import path from "node:path";
import { openSafetensors, pidAlive, type RngState, type TensorToWrite, writeFileAtomic, writeSafetensors } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { CheckpointError } from "./errors";
import type { AdamWState } from "./optim/adamw";

/** Where the trainer is in the data: the epoch and the index of the next example in that epoch's order. */
export interface DataCursor {
  epoch: number;
  index: number;
}

/** trainer_state.json of a checkpoint. */
export interface TrainerState {
  /** Completed trainer steps. */
  step: number;
  cursor: DataCursor;
  rng: Record<string, RngState>;
  /** The resolved config of the run. */
  config: Record<string, unknown>;
  /** Free-form extra state (e.g. totals for metrics). */
  extra?: Record<string, unknown>;
  version: 1;
}

export interface CheckpointContent {
  state: TrainerState;
  variables: tf.Variable[];
  /** Stable keys of the variables (parallel array), used in the files. */
  names: string[];
  optimizer: AdamWState;
  /** Writes the deployable adapter (PEFT) into the given directory. */
  saveAdapter?: (dir: string) => void;
}

const PREFIX = "checkpoint-";
const stepDir = (step: number) => `${PREFIX}${String(step).padStart(6, "0")}`;

/** Checkpoint directories of a run, oldest first. */
export function listCheckpoints(checkpointsDir: string): Array<{ step: number; dir: string }> {
  if (!fs.existsSync(checkpointsDir)) return [];
  return fs
    .readdirSync(checkpointsDir)
    .filter((n) => n.startsWith(PREFIX) && /^\d+$/.test(n.slice(PREFIX.length)) && fs.existsSync(path.join(checkpointsDir, n, "trainer_state.json")))
    .map((n) => ({ step: Number(n.slice(PREFIX.length)), dir: path.join(checkpointsDir, n) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * Deletes the `.tmp-<what>-<pid>-...` folders in `dir` that a crashed writer left behind (an interrupted checkpoint or
 * adapter write): those whose writer process no longer runs, or that are this process's own from an earlier run.
 * Returns the deleted paths.
 */
export function removeStaleTemps(dir: string, prefixes: readonly string[] = [`.tmp-${PREFIX}`, ".tmp-adapter-"]): string[] {
  if (!fs.existsSync(dir)) return [];
  const removed: string[] = [];
  for (const n of fs.readdirSync(dir)) {
    const prefix = prefixes.find((p) => n.startsWith(p));
    if (!prefix) continue;
    // .tmp-checkpoint-000005-<pid>-<time> / .tmp-adapter-<pid>
    const m = /^(?:\d+-)?(\d+)(?:-\d+)?$/.exec(n.slice(prefix.length));
    const pid = m ? Number(m[1]) : Number.NaN;
    if (Number.isFinite(pid) && pid !== process.pid && pidAlive(pid)) continue; // another live writer's
    fs.rmSync(path.join(dir, n), { recursive: true, force: true });
    removed.push(path.join(dir, n));
  }
  return removed;
}

export function latestCheckpoint(checkpointsDir: string): string | null {
  const all = listCheckpoints(checkpointsDir);
  return all.length ? all[all.length - 1].dir : null;
}

function f32(data: Float32Array | ArrayLike<number>, shape: number[]): TensorToWrite {
  return { dtype: "F32", shape, data: data instanceof Float32Array ? data : Float32Array.from(data) } as TensorToWrite;
}

/**
 * Writes checkpoints/checkpoint-NNNNNN atomically: everything goes to a temp directory that is renamed into
 * place when complete, so a crash never leaves a half checkpoint under the final name. Keeps the newest `keep`.
 * Layout: trainable.safetensors (exact fp32 trainable weights, by variable name), optimizer.safetensors (AdamW
 * m/v, by variable name), trainer_state.json (step, cursor, RNG states, config, optimizer step), adapter/ (PEFT).
 */
export function saveCheckpoint(checkpointsDir: string, c: CheckpointContent, keep: number): string {
  fs.mkdirSync(checkpointsDir, { recursive: true });
  const final = path.join(checkpointsDir, stepDir(c.state.step));
  const tmp = path.join(checkpointsDir, `.tmp-${stepDir(c.state.step)}-${process.pid}-${Date.now()}`);
  fs.mkdirSync(tmp);
  try {
    const vars: Record<string, TensorToWrite> = {};
    c.variables.forEach((v, i) => {
      vars[c.names[i]] = f32(v.dataSync() as Float32Array, v.shape);
    });
    writeSafetensors(path.join(tmp, "trainable.safetensors"), vars, { format: "pt" });
    const opt: Record<string, TensorToWrite> = {};
    c.variables.forEach((v, i) => {
      const name = c.names[i];
      const m = c.optimizer.m[name];
      const vv = c.optimizer.v[name];
      if (m) opt[`${name}::m`] = f32(m, v.shape);
      if (vv) opt[`${name}::v`] = f32(vv, v.shape);
    });
    writeSafetensors(path.join(tmp, "optimizer.safetensors"), opt, { step: String(c.optimizer.step) });
    if (c.saveAdapter) {
      fs.mkdirSync(path.join(tmp, "adapter"));
      c.saveAdapter(path.join(tmp, "adapter"));
    }
    writeFileAtomic(path.join(tmp, "trainer_state.json"), `${JSON.stringify({ ...c.state, optimizerStep: c.optimizer.step }, null, 2)}\n`);
    if (fs.existsSync(final)) fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new CheckpointError(`could not write checkpoint ${final}: ${(e as Error).message}`, { code: "CKPT_WRITE", details: { dir: final }, cause: e });
  }
  const all = listCheckpoints(checkpointsDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(old.dir, { recursive: true, force: true });
  return final;
}

export interface LoadedCheckpoint {
  state: TrainerState;
  optimizer: AdamWState;
}

/**
 * Reads a checkpoint and assigns the stored weights to `variables` (matched by name, shapes checked).
 * Returns the trainer state and the optimizer state for AdamW.setState.
 */
export function loadCheckpoint(dir: string, variables: tf.Variable[], names: string[] = variables.map((v) => v.name)): LoadedCheckpoint {
  const statePath = path.join(dir, "trainer_state.json");
  if (!fs.existsSync(statePath)) throw new CheckpointError(`${dir} is not a checkpoint (no trainer_state.json)`, { code: "CKPT_MISSING", details: { dir } });
  const raw = JSON.parse(fs.readFileSync(statePath, "utf8")) as TrainerState & { optimizerStep: number };
  const weights = openSafetensors(path.join(dir, "trainable.safetensors"));
  const opt = openSafetensors(path.join(dir, "optimizer.safetensors"));
  const m: Record<string, Float32Array> = {};
  const v: Record<string, Float32Array> = {};
  for (const [i, variable] of variables.entries()) {
    const name = names[i];
    if (!weights.keys().includes(name)) {
      throw new CheckpointError(`checkpoint ${dir} has no weights for variable "${name}"`, { code: "CKPT_VARIABLE", details: { dir, tensor: name } });
    }
    const t = weights.read(name);
    if (t.shape.join(",") !== variable.shape.join(",")) {
      throw new CheckpointError(`checkpoint ${dir}: "${name}" has shape [${t.shape}], the model expects [${variable.shape}]`, {
        code: "CKPT_SHAPE",
        details: { dir, tensor: name },
      });
    }
    tf.tidy(() => variable.assign(tf.tensor(t.data as Float32Array, variable.shape, "float32")));
    for (const [kind, into] of [
      ["m", m],
      ["v", v],
    ] as const) {
      const key = `${name}::${kind}`;
      if (opt.keys().includes(key)) into[name] = opt.read(key).data as Float32Array;
    }
  }
  const { optimizerStep, ...state } = raw;
  return { state: state as TrainerState, optimizer: { step: optimizerStep, m, v } };
}
