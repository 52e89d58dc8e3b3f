export { RarlError, BackendError } from "./errors";
export { Rng, type RngState } from "./rng";
export { initBackend, type BackendName, type InitBackendOptions } from "./backend";
