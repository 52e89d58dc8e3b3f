export * from "./errors";
export * from "./math/advantages";
export * from "./math/loss";
