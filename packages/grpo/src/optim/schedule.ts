import { TrainConfigError } from "../errors";

/** LR schedule after warmup (transformers' get_*_schedule_with_warmup). */
export type LrSchedulerType = "linear" | "cosine" | "constant";

export interface LrScheduleOptions {
  /** Peak learning rate. */
  learningRate: number;
  /** Total optimizer steps (the schedule reaches 0 there for linear/cosine). */
  totalSteps: number;
  /** Linear warmup steps from 0 to the peak. */
  warmupSteps: number;
  type: LrSchedulerType;
}

/**
 * Learning rate used for the optimizer update number `step` (0-based), as transformers' LambdaLR schedules:
 * warmup: lr·step/warmup; linear: lr·max(0, (total−step)/(total−warmup));
 * cosine (half a cycle): lr·max(0, ½(1 + cos(π·progress))), progress = (step−warmup)/(total−warmup).
 */
export function learningRateAt(step: number, o: LrScheduleOptions): number {
  if (!(o.learningRate >= 0)) throw new TrainConfigError(`learningRate must be >= 0, got ${o.learningRate}`, { code: "CONFIG_RANGE", details: { field: "learningRate" } });
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.learningRate * step) / Math.max(1, o.warmupSteps);
  if (o.type === "constant") return o.learningRate;
  const denom = Math.max(1, o.totalSteps - o.warmupSteps);
  if (o.type === "linear") return o.learningRate * Math.max(0, (o.totalSteps - step) / denom);
  if (o.type === "cosine") {
    const progress = (step - o.warmupSteps) / denom;
    return o.learningRate * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  }
  throw new TrainConfigError(`unknown lrScheduler "${o.type}" (expected linear, cosine or constant)`, { code: "CONFIG_ENUM", details: { field: "lrScheduler" } });
}

/** Warmup steps from a ratio of the total, as transformers: ceil(total × ratio). */
export function warmupStepsFrom(totalSteps: number, warmupRatio: number, warmupSteps?: number): number {
  if (warmupSteps !== undefined && warmupSteps > 0) return warmupSteps;
  return Math.ceil(totalSteps * warmupRatio);
}
