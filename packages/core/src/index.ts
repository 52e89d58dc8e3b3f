export { RarlError, BackendError, SafetensorsError } from "./errors";
export { Rng, type RngState } from "./rng";
export { initBackend, type BackendName, type InitBackendOptions } from "./backend";
export { writeFileAtomic } from "./fs";
export * from "./safetensors/index";
