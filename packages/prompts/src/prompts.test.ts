import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Template as JinjaTemplate } from "@huggingface/jinja";
import { fixturesDir, RarlError, repoRoot } from "@rarl/core";
import { describe, expect, it } from "vitest";
import {
  BUILTIN_TEMPLATES,
  buildPrompt,
  defineTemplate,
  EXPLANATION_REQUIRED,
  loadTemplates,
  NON_REASONING_SYSTEM_PROMPT,
  REASONING_SYSTEM_PROMPT,
  renderTemplate,
  SamplerError,
  TemplateError,
  TemplateSampler,
  TRAINING_TEMPLATES,
  templatesFromJson,
} from "./index";

const squash = (s: string) => s.replace(/\s+/g, " ").trim();
const sample = { id: "s1", question: "Is there a fracture?", answer_type: "closed" as const, modality: "X-Ray" };

function caught(fn: () => unknown): TemplateError {
  try {
    fn();
  } catch (e) {
    return e as TemplateError;
  }
  throw new Error("expected a throw");
}

describe("built-in templates", () => {
  it("are the paper's Appendix A and §3.3 texts, verbatim", () => {
    const paper = squash(fs.readFileSync(path.join(repoRoot(), "docs", "reference", "rarl-paper.md"), "utf8"));
    for (const t of TRAINING_TEMPLATES) {
      // the paper's f-strings print the variable as the bare word `question`
      expect(paper).toContain(`prompt = f"${t.user.replace("{question}", "question")}"`);
    }
    expect(paper).toContain(`Reasoning prompting: "${REASONING_SYSTEM_PROMPT}"`);
    expect(paper).toContain(`Non-reasoning prompting*: "${NON_REASONING_SYSTEM_PROMPT}"`);
    expect(Object.keys(BUILTIN_TEMPLATES).sort()).toEqual(["explanation-required", "non-reasoning", "open-ended", "reasoning", "short-form"]);
  });
});

describe("templates and variables", () => {
  it("renders declared variables and escapes braces", () => {
    const t = defineTemplate({ name: "t", user: "Q: {question} {{json}} in {modality}", variables: ["question", "modality"] });
    expect(renderTemplate(t, { question: "why?", modality: "CT" }).user).toBe("Q: why? {json} in CT");
  });
  it("rejects a missing or unknown variable with a typed error naming template and variable", () => {
    const missing = caught(() => renderTemplate(EXPLANATION_REQUIRED, {}));
    expect(missing).toBeInstanceOf(TemplateError);
    expect(missing).toBeInstanceOf(RarlError);
    expect(missing.code).toBe("TEMPLATE_MISSING_VARIABLE");
    expect(missing.message).toContain('"explanation-required"');
    expect(missing.details).toMatchObject({ template: "explanation-required", variable: "question" });
    const unknown = caught(() => renderTemplate(EXPLANATION_REQUIRED, { question: "q", organ: "lung" }));
    expect(unknown.code).toBe("TEMPLATE_UNKNOWN_VARIABLE");
    expect(unknown.details).toMatchObject({ template: "explanation-required", variable: "organ" });
    const undeclared = caught(() => defineTemplate({ name: "bad", user: "{question} {organ}", variables: ["question"] }));
    expect(undeclared.details).toMatchObject({ template: "bad", variable: "organ" });
    const unused = caught(() => defineTemplate({ name: "bad2", user: "{question}", variables: ["question", "x"] }));
    expect(unused.code).toBe("TEMPLATE_UNUSED_VARIABLE");
  });
  it("loads user templates from JSON (validated) and from a JS module", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rarl-prompts-"));
    const good = path.join(dir, "t.json");
    fs.writeFileSync(good, JSON.stringify({ templates: [{ name: "mine", system: "Be brief.", user: "{question}", variables: ["question"] }] }));
    const [t] = await loadTemplates(good);
    expect(buildPrompt(sample, t)[0]).toEqual({ role: "system", content: "Be brief." });
    const bad = path.join(dir, "bad.json");
    fs.writeFileSync(bad, JSON.stringify([{ name: "x", user: "{question}", variables: ["question"], colour: "red" }]));
    await expect(loadTemplates(bad)).rejects.toThrow(/templates\[0\]: unknown key "colour"/);
    expect(() => templatesFromJson([{ name: "y", user: 3, variables: [] }], "f.json")).toThrow(/f\.json: templates\[0\].*`user` must be a string/);
    const mod = path.join(dir, "t.mjs");
    fs.writeFileSync(mod, 'export default [{ name: "js", user: "Look: {question}", variables: ["question"] }];');
    const [js] = await loadTemplates(mod);
    expect(js.name).toBe("js");
    // The TS modules get their own (empty) tsconfig: otherwise the transform takes the nearest one above the temp
    // folder, and a stray /tmp/tsconfig.json with an unresolvable "extends" once failed this test in CI.
    fs.writeFileSync(path.join(dir, "tsconfig.json"), "{}\n");
    const ts = path.join(dir, "t.ts");
    fs.writeFileSync(ts, 'const t: { name: string; user: string; variables: string[] } = { name: "ts", user: "{question}?", variables: ["question"] };\nexport const templates = [t];\n');
    expect((await loadTemplates(ts))[0].user).toBe("{question}?");
    const badTs = path.join(dir, "bad.ts");
    fs.writeFileSync(badTs, 'export default { name: "bad-ts", user: "{question} {organ}", variables: ["question"] };\n');
    await expect(loadTemplates(badTs)).rejects.toThrow(/export \[0\]: template "bad-ts": placeholder \{organ\}/);
    fs.rmSync(dir, { recursive: true });
  });
});

describe("TemplateSampler", () => {
  const ids = Array.from({ length: 3000 }, (_, i) => `ex${i}`);
  it("is deterministic per (seed, epoch, example) and independent of call order", () => {
    const a = new TemplateSampler(TRAINING_TEMPLATES, { seed: 7 });
    const b = new TemplateSampler(TRAINING_TEMPLATES, { seed: 7 });
    const fwd = a.assignEpoch(2, ids).map((t) => t.name);
    const rev = [...ids].reverse().map((id) => b.assign(2, id).name).reverse();
    expect(rev).toEqual(fwd);
    const otherEpoch = a.assignEpoch(3, ids).map((t) => t.name);
    const otherSeed = new TemplateSampler(TRAINING_TEMPLATES, { seed: 8 }).assignEpoch(2, ids).map((t) => t.name);
    expect(otherEpoch).not.toEqual(fwd);
    expect(otherSeed).not.toEqual(fwd);
  });
  it("is uniform by default and follows weights", () => {
    const count = (names: string[]) => {
      const m: Record<string, number> = {};
      for (const n of names) m[n] = (m[n] ?? 0) + 1;
      return m;
    };
    const uni = count(new TemplateSampler(TRAINING_TEMPLATES, { seed: 1 }).assignEpoch(0, ids).map((t) => t.name));
    for (const t of TRAINING_TEMPLATES) expect(Math.abs(uni[t.name] / 3000 - 1 / 3)).toBeLessThan(0.04);
    const w = count(
      new TemplateSampler(TRAINING_TEMPLATES, { seed: 1, weights: { "explanation-required": 3, "short-form": 1 } }).assignEpoch(0, ids).map((t) => t.name),
    );
    expect(w["open-ended"]).toBeUndefined();
    expect(Math.abs(w["explanation-required"] / 3000 - 0.75)).toBeLessThan(0.04);
  });
  it("rejects bad weights", () => {
    expect(() => new TemplateSampler([])).toThrow(SamplerError);
    expect(() => new TemplateSampler(TRAINING_TEMPLATES, { weights: { nope: 1 } })).toThrow(/unknown template "nope"/);
    expect(() => new TemplateSampler(TRAINING_TEMPLATES, { weights: [1, -1, 1] })).toThrow(/short-form/);
    expect(() => new TemplateSampler(TRAINING_TEMPLATES, { weights: [0, 0, 0] })).toThrow(/sum to 0/);
  });
});

describe("buildPrompt", () => {
  it("gives the HF message form with an image slot, and renders through the Qwen2-VL chat template", () => {
    const msgs = buildPrompt(sample, BUILTIN_TEMPLATES.reasoning);
    expect(msgs).toEqual([
      { role: "system", content: REASONING_SYSTEM_PROMPT },
      { role: "user", content: [{ type: "image" }, { type: "text", text: "Is there a fracture?" }] },
    ]);
    const train = buildPrompt(sample, EXPLANATION_REQUIRED, { system: "non-reasoning" });
    expect(train[0]).toEqual({ role: "system", content: NON_REASONING_SYSTEM_PROMPT });
    expect((train[1].content as any)[1].text).toContain("User: Is there a fracture? Assistant: Let me solve this step by step.");
    expect(buildPrompt(sample, EXPLANATION_REQUIRED)).toHaveLength(1);
    const tmpl = JSON.parse(fs.readFileSync(path.join(fixturesDir(), "qwen2vl-tiny", "chat_template.json"), "utf8")).chat_template;
    const text = new JinjaTemplate(tmpl).render({ messages: msgs, add_generation_prompt: true });
    expect(text).toBe(
      `<|im_start|>system\n${REASONING_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Is there a fracture?<|im_end|>\n<|im_start|>assistant\n`,
    );
  });
  it("appends lettered options for multiple choice unless the template declares {choices}", () => {
    const mc = { id: "m", question: "Which organ?", answer_type: "choice" as const, choices: ["liver", "spleen"] };
    expect((buildPrompt(mc, BUILTIN_TEMPLATES["short-form"])[0].content as any)[1].text).toContain("User: Which organ?\nOptions:\nA. liver\nB. spleen Assistant:");
    const own = defineTemplate({ name: "own", user: "{question} [{choices}]", variables: ["question", "choices"] });
    expect((buildPrompt(mc, own)[0].content as any)[1].text).toBe("Which organ? [A. liver\nB. spleen]");
    expect(() => buildPrompt(sample, own)).toThrow(/sample "s1" has no value for variable "choices"/);
    expect(buildPrompt({ ...sample, images: [1, 2] }, BUILTIN_TEMPLATES.reasoning)[1].content).toHaveLength(3);
  });
});
