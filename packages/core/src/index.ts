export { RarlError, BackendError, SafetensorsError } from "./errors";
export { Rng, type RngState } from "./rng";
export { initBackend, type BackendName, type InitBackendOptions } from "./backend";
export { writeFileAtomic } from "./fs";
export * from "./safetensors/index";
export { getLogger, setLogSink, formatLogLine, type Logger, type LogLevel, type LogFields } from "./logger";
export { createProgress, type Progress, type ProgressOptions } from "./progress";
