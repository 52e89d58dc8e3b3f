// ESM entry of "@rarl/cli/schema.json": the JSON Schema of `rarl train` configs (rarl.config.schema.json beside
// this file), importable without an import attribute. `require("@rarl/cli/schema.json")` reads the JSON directly.
import { createRequire } from "node:module";

export const schema = createRequire(import.meta.url)("./rarl.config.schema.json");
export default schema;
