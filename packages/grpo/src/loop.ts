import fs from "node:fs";
import path from "node:path";
import { createProgress, getLogger, type Progress, Rng, readToHost } from "@rarl/core";
import * as tf from "@tensorflow/tfjs-core";
import { type DataCursor, type LoadedCheckpoint, listCheckpoints, loadCheckpoint, removeStaleTemps, saveCheckpoint, type TrainerState } from "./checkpoint";
import type { CommonTrainConfig } from "./config";
import { CheckpointError, GenerationBackendError, NonFiniteError } from "./errors";
import { MetricsWriter } from "./metrics";
import { AdamW, clipByGlobalNormAsync } from "./optim/adamw";
import { learningRateAt, warmupStepsFrom } from "./optim/schedule";
import type { Policy, PreparedPrompt } from "./policy";

const log = getLogger("grpo");

/** What one trainer step reports back to the loop (everything JSON-serialisable goes into metrics.jsonl). */
export interface StepReport {
  loss: number;
  /** Tokens processed by the step (completion tokens), for tokens/s. */
  tokens: number;
  metrics: Record<string, unknown>;
  /** Sample completions to log (every logCompletionsSteps). */
  samples?: Array<Record<string, unknown>>;
  /** Every completion of the step with its rewards (logCompletions), written to completions.jsonl at logging steps. */
  completions?: Array<Record<string, unknown>>;
}

export interface TrainResult {
  /** Completed steps. */
  steps: number;
  totalSteps: number;
  reason: "completed" | "interrupted";
  /** The signal that interrupted the run (SIGINT: Ctrl-C; SIGTERM: docker stop, Slurm, kill); absent after requestStop(). */
  signal?: "SIGINT" | "SIGTERM";
  runDir: string;
  /** RUN_DIR/adapter (final PEFT adapter); null when interrupted. */
  adapterDir: string | null;
  lastCheckpoint: string | null;
}

export interface TrainOptions {
  /** Continue from the newest checkpoint in RUN_DIR/checkpoints. */
  resume?: boolean;
  /**
   * Install SIGINT and SIGTERM handlers that checkpoint and stop after the current step (docker stop and Slurm send
   * SIGTERM before killing). A second signal of either kind exits at once with 128 + its number. Default true.
   */
  handleSigint?: boolean;
  /** Called after every step with its metrics record (tests, UIs). */
  onStep?: (record: Record<string, unknown>) => void;
}

/** An example with a stable id (template choice and logs use it). */
export interface HasId {
  id: string;
}

/**
 * The part the GRPO and SFT trainers share: data order and cursor, AdamW + LR schedule + clipping,
 * checkpoints and exact resume, SIGINT/SIGTERM, NaN guard, metrics and progress.
 */
export abstract class TrainLoop<E extends HasId, P, H extends PreparedPrompt> {
  protected optimizer: AdamW | null = null;
  protected variables: tf.Variable[] = [];
  protected variableNames: string[] = [];
  protected rng: Record<string, Rng> = {};
  protected cursor: DataCursor = { epoch: 0, index: 0 };
  protected step = 0;
  protected updates = 0;
  protected totalSteps = 0;
  private stopRequested = false;
  private order: { epoch: number; perm: number[] } | null = null;
  private stepStart: { cursor: DataCursor; rng: TrainerState["rng"]; step: number } | null = null;
  protected readonly checkpointsDir: string;

  constructor(
    protected readonly cfg: CommonTrainConfig & { trainer: string },
    protected readonly policy: Policy<P, H>,
    protected readonly examples: readonly E[],
    readonly runDir: string,
  ) {
    this.checkpointsDir = path.join(runDir, "checkpoints");
    policy.setGradientCheckpointing?.(cfg.gradientCheckpointing ?? true);
  }

  /** Examples consumed by one step. */
  protected abstract examplesPerStep(): number;
  /** Optimizer updates per step (μ for GRPO, 1 for SFT). */
  protected abstract updatesPerStep(): number;
  /** Runs one step on `micro` (micro-batches of examples, with their epoch). */
  protected abstract runStep(micro: Array<Array<{ example: E; epoch: number }>>): Promise<StepReport>;

  /**
   * An error to raise after the current step has been recorded and checkpointed (e.g. a generation backend that
   * could not take the new weights): the step's work is kept and the run stops with a clear error.
   */
  protected fatalAfterStep: Error | null = null;

  /** Called once the run's state is ready (after a resume), before the first step. */
  protected async onTrainStart(): Promise<void> {}

  /** Asks the loop to checkpoint and stop after the current step (what SIGINT and SIGTERM do). */
  requestStop(): void {
    this.stopRequested = true;
  }

  protected computeTotalSteps(): number {
    if (this.cfg.maxSteps > 0) return this.cfg.maxSteps;
    return Math.max(1, Math.ceil((this.cfg.numEpochs * this.examples.length) / this.examplesPerStep()));
  }

  private permutation(epoch: number): number[] {
    if (this.order?.epoch !== epoch) {
      const perm = this.examples.map((_, i) => i);
      new Rng((this.cfg.seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).shuffle(perm);
      this.order = { epoch, perm };
    }
    return this.order.perm;
  }

  /** Takes the next `n` examples in the epoch order, advancing the cursor (wrapping into the next epoch). */
  protected take(n: number): Array<{ example: E; epoch: number }> {
    const out: Array<{ example: E; epoch: number }> = [];
    while (out.length < n) {
      if (this.cursor.index >= this.examples.length) this.cursor = { epoch: this.cursor.epoch + 1, index: 0 };
      const perm = this.permutation(this.cursor.epoch);
      out.push({ example: this.examples[perm[this.cursor.index]], epoch: this.cursor.epoch });
      this.cursor = { epoch: this.cursor.epoch, index: this.cursor.index + 1 };
    }
    return out;
  }

  protected lrAt(update: number): number {
    const total = this.totalSteps * this.updatesPerStep();
    return learningRateAt(update, {
      learningRate: this.cfg.learningRate,
      totalSteps: total,
      warmupSteps: warmupStepsFrom(total, this.cfg.warmupRatio, this.cfg.warmupSteps),
      type: this.cfg.lrScheduler,
    });
  }

  /**
   * Clips, checks and applies averaged gradients (disposes them). NaN/Inf in the loss or the gradients:
   * writes a checkpoint of the last good state and throws NonFiniteError.
   */
  protected async applyUpdate(grads: tf.Tensor[], loss: number): Promise<{ gradNorm: number; lr: number }> {
    const clipped = await clipByGlobalNormAsync(grads, this.cfg.maxGradNorm);
    if (!Number.isFinite(loss) || !Number.isFinite(clipped.norm)) {
      tf.dispose(clipped.grads);
      const what = !Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${clipped.norm}`;
      const ckpt = await this.saveLastGood();
      throw new NonFiniteError(`step ${this.step + 1}: ${what}; stopped. Last good state saved to ${ckpt}`, {
        code: "TRAIN_NON_FINITE",
        details: { step: this.step + 1, loss, gradNorm: clipped.norm, checkpoint: ckpt },
      });
    }
    const lr = this.lrAt(this.updates);
    this.optimizer!.step(clipped.grads, lr);
    tf.dispose(clipped.grads);
    this.updates += 1;
    return { gradNorm: clipped.norm, lr };
  }

  private rngStates(): TrainerState["rng"] {
    return Object.fromEntries(Object.entries(this.rng).map(([k, r]) => [k, r.getState()]));
  }

  private state(): TrainerState {
    return { version: 1, step: this.step, cursor: { ...this.cursor }, rng: this.rngStates(), config: { ...this.cfg } as Record<string, unknown>, extra: { updates: this.updates } };
  }

  protected async saveCheckpointNow(state = this.state()): Promise<string> {
    // The writer reads synchronously; GPU backends (webgpu) read only asynchronously, so download first.
    await readToHost([...this.variables, ...this.optimizer!.stateTensors()]);
    return saveCheckpoint(
      this.checkpointsDir,
      { state, variables: this.variables, names: this.variableNames, optimizer: this.optimizer!.getState(), saveAdapter: (d) => this.policy.saveAdapter(d) },
      this.cfg.saveTotalLimit,
    );
  }

  /** Checkpoint of the state at the start of the failing step (weights as they are before the bad update). */
  private saveLastGood(): Promise<string> {
    const s = this.stepStart!;
    return this.saveCheckpointNow({ ...this.state(), step: s.step, cursor: s.cursor, rng: s.rng, extra: { updates: this.updates, nonFinite: true } });
  }

  /**
   * Loads the newest checkpoint that reads back whole. A newer one that does not (truncated or corrupt files, bad
   * trainer_state.json) is renamed to `checkpoint-NNNNNN.corrupt` (kept for inspection, never picked up again) with a
   * warning, and the previous one is tried. Throws CKPT_MISSING when there is none, CKPT_CORRUPT when none reads.
   */
  private loadNewestValid(): { dir: string; loaded: LoadedCheckpoint } {
    const all = listCheckpoints(this.checkpointsDir).reverse();
    if (!all.length) throw new CheckpointError(`--resume: no checkpoint in ${this.checkpointsDir}`, { code: "CKPT_MISSING", details: { dir: this.checkpointsDir } });
    const failures: string[] = [];
    for (const { dir } of all) {
      try {
        return { dir, loaded: loadCheckpoint(dir, this.variables, this.variableNames) };
      } catch (e) {
        // a checkpoint of another model shape is not corrupt: the run's config changed; say so and touch nothing
        if (e instanceof CheckpointError && (e.code === "CKPT_VARIABLE" || e.code === "CKPT_SHAPE")) throw e;
        const reason = (e as Error).message;
        failures.push(`${dir}: ${reason}`);
        const aside = `${dir}.corrupt`;
        fs.rmSync(aside, { recursive: true, force: true });
        fs.renameSync(dir, aside);
        log.warn("--resume: checkpoint unreadable, set aside; falling back to the previous one", { checkpoint: dir, setAside: aside, reason });
      }
    }
    throw new CheckpointError(`--resume: no readable checkpoint in ${this.checkpointsDir}:\n  ${failures.join("\n  ")}`, {
      code: "CKPT_CORRUPT",
      details: { dir: this.checkpointsDir, failures },
    });
  }

  private restore(): void {
    const {
      dir,
      loaded: { state, optimizer },
    } = this.loadNewestValid();
    if (state.config.trainer !== this.cfg.trainer) {
      throw new CheckpointError(`checkpoint ${dir} is from a "${state.config.trainer}" run, this run is "${this.cfg.trainer}"`, { code: "CKPT_MISMATCH", details: { dir } });
    }
    this.optimizer!.setState(optimizer);
    this.step = state.step;
    this.cursor = state.cursor;
    this.updates = Number(state.extra?.updates ?? optimizer.step);
    for (const [k, s] of Object.entries(state.rng)) {
      this.rng[k] ??= new Rng(0);
      this.rng[k].setState(s);
    }
    log.info("resumed", { checkpoint: dir, step: this.step });
  }

  async train(opts: TrainOptions = {}): Promise<TrainResult> {
    this.variables = this.policy.trainableVariables();
    this.variableNames = this.policy.trainableNames?.() ?? this.variables.map((v) => v.name);
    this.optimizer = new AdamW(
      this.variables,
      { beta1: this.cfg.adamBeta1, beta2: this.cfg.adamBeta2, eps: this.cfg.adamEpsilon, weightDecay: this.cfg.weightDecay },
      this.variableNames,
    );
    this.rng = { sampling: new Rng(this.cfg.seed) };
    this.totalSteps = this.computeTotalSteps();
    fs.mkdirSync(this.runDir, { recursive: true });
    for (const stale of [...removeStaleTemps(this.checkpointsDir), ...removeStaleTemps(this.runDir)]) log.warn("removed a temp folder left by an interrupted write", { path: stale });
    const metrics = new MetricsWriter(this.runDir);
    if (opts.resume) {
      this.restore();
      metrics.truncateAfter(this.step);
    }
    let signal: TrainResult["signal"];
    const onSignal = (sig: "SIGINT" | "SIGTERM") => {
      if (signal) {
        log.warn(`${sig} again: exiting now without a checkpoint`);
        process.exit(128 + (sig === "SIGINT" ? 2 : 15));
      }
      signal = sig;
      log.warn(`${sig}: checkpointing after the current step`);
      this.requestStop();
    };
    const handlers = { SIGINT: () => onSignal("SIGINT"), SIGTERM: () => onSignal("SIGTERM") };
    if (opts.handleSigint !== false) for (const [sig, h] of Object.entries(handlers)) process.on(sig, h);
    await this.onTrainStart();
    const progress: Progress = createProgress({ total: this.totalSteps, label: this.cfg.trainer, enabled: this.cfg.progress });
    progress.update(this.step);
    let lastCheckpoint: string | null = null;
    let reason: TrainResult["reason"] = "completed";
    try {
      while (this.step < this.totalSteps) {
        this.stepStart = { cursor: { ...this.cursor }, rng: this.rngStates(), step: this.step };
        const micro: Array<Array<{ example: E; epoch: number }>> = [];
        const per = this.examplesPerStep() / this.cfg.gradientAccumulationSteps;
        for (let a = 0; a < this.cfg.gradientAccumulationSteps; a++) micro.push(this.take(per));
        const t0 = performance.now();
        let rep: StepReport;
        try {
          rep = await this.runStep(micro);
        } catch (e) {
          // A generation backend that gave up (server gone): no update of this step happened yet (generation comes
          // first), so the checkpoint of the step's start loses nothing; --resume redoes the step.
          if (!(e instanceof GenerationBackendError)) throw e;
          const ckpt = await this.saveLastGood();
          throw new GenerationBackendError(`step ${this.step + 1}: ${e.message}. Stopped; checkpoint of step ${this.step} in ${ckpt} (continue with --resume once the server is back)`, {
            code: e.code,
            details: { ...e.details, step: this.step + 1, checkpoint: ckpt },
            cause: e,
          });
        }
        const dt = (performance.now() - t0) / 1000;
        this.step += 1;
        const mem = tf.memory();
        const record: Record<string, unknown> = {
          step: this.step,
          epoch: micro[micro.length - 1][per - 1].epoch,
          loss: rep.loss,
          ...rep.metrics,
          stepTime: dt,
          tokensPerSec: rep.tokens / Math.max(dt, 1e-9),
          numTensors: mem.numTensors,
          numBytes: mem.numBytes,
        };
        metrics.write(record);
        if (rep.samples && this.cfg.logCompletionsSteps > 0 && this.step % this.cfg.logCompletionsSteps === 0) {
          metrics.writeSamples({ step: this.step, samples: rep.samples });
          log.info("samples", { step: this.step, first: rep.samples[0] });
        }
        if (rep.completions && this.cfg.logCompletionsSteps > 0 && this.step % this.cfg.logCompletionsSteps === 0) {
          metrics.writeCompletions({ step: this.step, completions: rep.completions });
        }
        opts.onStep?.(record);
        progress.update(this.step, { loss: rep.loss, reward: record.reward as number | undefined });
        // Let pending signals (SIGINT/SIGTERM) run their handlers: a step whose awaits all resolve at once (a fast or
        // synchronous policy) would otherwise never give the event loop a turn, and the stop request would never land.
        await new Promise((r) => setImmediate(r));
        const atEnd = this.step >= this.totalSteps;
        if (this.step % this.cfg.saveSteps === 0 || atEnd || this.stopRequested || this.fatalAfterStep) lastCheckpoint = await this.saveCheckpointNow();
        if (this.fatalAfterStep) {
          const e = this.fatalAfterStep;
          this.fatalAfterStep = null;
          const details = e instanceof GenerationBackendError ? e.details : {};
          throw new GenerationBackendError(`after step ${this.step}: ${e.message}. Stopped; step ${this.step} is saved in ${lastCheckpoint} (continue with --resume)`, {
            code: e instanceof GenerationBackendError ? e.code : "TRAIN_STOPPED",
            details: { ...details, step: this.step, checkpoint: lastCheckpoint },
            cause: e,
          });
        }
        if (this.stopRequested && !atEnd) {
          reason = "interrupted";
          break;
        }
      }
    } finally {
      progress.stop();
      metrics.close();
      if (opts.handleSigint !== false) for (const [sig, h] of Object.entries(handlers)) process.removeListener(sig, h);
    }
    let adapterDir: string | null = null;
    if (reason === "completed") {
      adapterDir = path.join(this.runDir, "adapter");
      const tmp = path.join(this.runDir, `.tmp-adapter-${process.pid}`);
      fs.rmSync(tmp, { recursive: true, force: true });
      fs.mkdirSync(tmp);
      this.policy.saveAdapter(tmp);
      fs.rmSync(adapterDir, { recursive: true, force: true });
      fs.renameSync(tmp, adapterDir);
    }
    this.optimizer.dispose();
    return { steps: this.step, totalSteps: this.totalSteps, reason, ...(signal ? { signal } : {}), runDir: this.runDir, adapterDir, lastCheckpoint };
  }
}
