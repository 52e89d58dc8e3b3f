import { JudgeConfigError } from "./errors";

/** A parsed judge name. */
export type JudgeSpec =
  | { provider: "openai"; model: string; name: string }
  | { provider: "gemini"; model: string; name: string }
  | { provider: "offline"; model: "offline"; name: "offline" };

/** Parses `openai:<model>`, `gemini:<model>` or `offline`. Throws {@link JudgeConfigError} otherwise. */
export function parseJudgeName(name: string): JudgeSpec {
  const n = name.trim();
  if (n === "offline") return { provider: "offline", model: "offline", name: "offline" };
  const m = /^(openai|gemini):(.+)$/.exec(n);
  if (!m?.[2].trim()) {
    throw new JudgeConfigError(
      `unknown judge "${name}": expected "openai:<model>" (any OpenAI-compatible server), "gemini:<model>" or "offline"`,
      { code: "JUDGE_UNKNOWN", details: { judge: name } },
    );
  }
  return { provider: m![1] as "openai" | "gemini", model: m![2].trim(), name: `${m![1]}:${m![2].trim()}` };
}

/** Environment variables consulted for the API key, in order, unless a named one is given. */
export function apiKeyEnvNames(provider: "openai" | "gemini", apiKeyEnv?: string): string[] {
  if (apiKeyEnv) return [apiKeyEnv];
  return provider === "openai" ? ["OPENAI_API_KEY"] : ["GEMINI_API_KEY", "GOOGLE_API_KEY"];
}

/** Reads the API key from the environment. Throws (naming the variables, never a value) when none is set. */
export function resolveApiKey(provider: "openai" | "gemini", apiKeyEnv?: string, env: NodeJS.ProcessEnv = process.env): string {
  const names = apiKeyEnvNames(provider, apiKeyEnv);
  for (const n of names) {
    const v = env[n];
    if (typeof v === "string" && v.trim() !== "") return v.trim();
  }
  throw new JudgeConfigError(`no API key for the ${provider} judge: set ${names.join(" or ")} in the environment`, {
    code: "JUDGE_NO_API_KEY",
    details: { provider, env: names },
  });
}

/** Human-readable judge label for reports, after the paper's column names. */
export function judgeLabel(judge: string): string {
  if (judge === "offline") return "offline (not an LLM judge)";
  const m = /^(openai|gemini):(.+)$/.exec(judge);
  const model = m ? m[2] : judge;
  const known: Record<string, string> = { "gpt-4o-mini": "GPT-4o mini", "gemini-1.5-flash": "Gemini 1.5 Flash", "gpt-4o": "GPT-4o" };
  return known[model] ?? judge;
}
