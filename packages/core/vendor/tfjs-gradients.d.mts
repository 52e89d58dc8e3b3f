// Side-effect module: registers every tfjs-core gradient. See scripts/vendor-tfjs-gradients.mjs.
export {};
