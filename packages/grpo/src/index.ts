export * from "./errors";
export * from "./math/advantages";
export * from "./math/loss";
export * from "./optim/adamw";
export * from "./optim/schedule";
