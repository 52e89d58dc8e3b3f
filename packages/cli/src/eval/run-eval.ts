import fs from "node:fs";
import path from "node:path";
import { initBackend, RarlError, withOutputLock, writeFileAtomic } from "@rarl/core";
import { imageInput, loadDataset, type Sample } from "@rarl/datasets";
import { offlineVerdict, type PredictionRecord } from "@rarl/judge";
import { generate, loadAdapter, loadGenerationConfig, loadQwen2VL, type Qwen2VLForConditionalGeneration, type Qwen2VLProcessor } from "@rarl/model";
import { BUILTIN_TEMPLATES, buildPrompt } from "@rarl/prompts";
import { type Headroom, type HeadroomItem, headroomMetrics } from "./headroom";

/** Bad eval input (missing model folder, bad --data spec, empty split). */
export class EvalInputError extends RarlError {}

/** Splits a completion into its `<think>` reasoning and `<answer>` final answer (no tags: the whole text is the answer). */
export function splitThinkAnswer(text: string): { reasoning?: string; answer: string } {
  const think = /<think>([\s\S]*?)(?:<\/think>|$)/i.exec(text);
  const ans = /<answer>([\s\S]*?)(?:<\/answer>|$)/i.exec(text);
  let answer: string;
  if (ans) answer = ans[1];
  else answer = text.replace(/<think>[\s\S]*?(<\/think>|$)/i, "");
  const reasoning = think ? think[1].trim() : undefined;
  return { reasoning: reasoning === undefined || reasoning === "" ? undefined : reasoning, answer: answer.trim() };
}

/** Parses `--data <format>:<path>` (the path may contain ':'). */
export function parseDataSpec(spec: string): { format: string; path: string } {
  const i = spec.indexOf(":");
  if (i <= 0 || i === spec.length - 1) {
    throw new EvalInputError(`--data "${spec}": expected <format>:<path>, e.g. rarl:data/samples.jsonl`, { code: "EVAL_BAD_DATA", details: { field: "data" } });
  }
  return { format: spec.slice(0, i), path: spec.slice(i + 1) };
}

/** A loaded model (+ optional adapter) ready for generation. */
export interface EvalModel {
  model: Qwen2VLForConditionalGeneration;
  processor: Qwen2VLProcessor;
  eosTokenIds?: number[];
  dispose(): void;
}

/** Fails fast (before any loading) when the model folder has no config.json or the adapter folder no adapter_config.json. */
export function checkModelPaths(modelDir: string, adapterDir?: string): void {
  for (const [what, d] of [
    ["--model", modelDir],
    ["--adapter", adapterDir],
  ] as const) {
    if (d !== undefined && !fs.existsSync(path.join(d, what === "--model" ? "config.json" : "adapter_config.json"))) {
      throw new EvalInputError(`${what} ${d}: not a ${what === "--model" ? "model folder (no config.json)" : "PEFT adapter folder (no adapter_config.json)"}`, {
        code: "EVAL_BAD_PATH",
        details: { field: what.slice(2), file: d },
      });
    }
  }
}

/** Loads a Hugging Face Qwen2-VL folder and, optionally, a PEFT LoRA adapter folder on top. */
export async function loadEvalModel(modelDir: string, adapterDir?: string): Promise<EvalModel> {
  checkModelPaths(modelDir, adapterDir);
  await initBackend();
  const { model, processor } = await loadQwen2VL(modelDir);
  if (!processor) throw new EvalInputError(`${modelDir}: no processor files`, { code: "EVAL_BAD_PATH", details: { file: modelDir } });
  const adapter = adapterDir ? loadAdapter(model, adapterDir) : null;
  const gen = loadGenerationConfig(modelDir);
  return {
    model,
    processor,
    eosTokenIds: gen?.eosTokenIds,
    dispose: () => {
      adapter?.remove();
    },
  };
}

/** Sampling options of {@link generateAnswers} (greedy by default). */
export interface AnswerOptions {
  /** Prompts per generate() batch. Default 16. */
  batchSize?: number;
  /** Max new tokens. Default 128. */
  maxNewTokens?: number;
  /** Sample instead of greedy decoding. Default false. */
  doSample?: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
  /** Ids never generated (HF `suppress_tokens`); "vision": the model's vision ids ({@link visionTokenIds}). Default none (headroom samples: "vision", as GRPO). */
  suppressTokens?: number[] | "vision";
  /** Seed of sampling. Default 0. */
  seed?: number;
}

/** The image/video pad and vision start/end ids of a loaded model (GRPO suppresses them when it samples). */
export function visionTokenIds(m: EvalModel): number[] {
  const c = m.model.config;
  const t = m.processor.tokenizer.specialIds;
  const ids = [c.imageTokenId, c.videoTokenId, c.visionStartTokenId, c.visionEndTokenId, t?.imagePad, t?.videoPad, t?.visionStart, t?.visionEnd];
  return [...new Set(ids.filter((x): x is number => typeof x === "number"))];
}

/** Generates one completion per (messages, image) prompt in batches; returns the texts in order. */
export async function generateAnswers(
  m: EvalModel,
  prompts: Array<{ messages: unknown[]; images?: Array<string | Uint8Array> }>,
  o: AnswerOptions = {},
  onBatch?: (done: number, total: number) => void,
): Promise<string[]> {
  return (await generateSamples(m, prompts, o, 1, onBatch)).map((r) => r[0]);
}

/** Generates `g` completions per prompt (sharing one prefill, as GRPO does) in batches; returns them per prompt. */
export async function generateSamples(
  m: EvalModel,
  prompts: Array<{ messages: unknown[]; images?: Array<string | Uint8Array> }>,
  o: AnswerOptions,
  g: number,
  onBatch?: (done: number, total: number) => void,
): Promise<string[][]> {
  const bs = o.batchSize ?? 16;
  const out: string[][] = [];
  for (let i = 0; i < prompts.length; i += bs) {
    const batch = prompts.slice(i, i + bs).map((p) => ({ text: m.processor.applyChatTemplate(p.messages as never, { addGenerationPrompt: true }), images: p.images }));
    const res = await generate(m.model, m.processor, {
      prompts: batch,
      maxNewTokens: o.maxNewTokens ?? 128,
      doSample: o.doSample ?? false,
      temperature: o.temperature,
      topP: o.topP,
      topK: o.topK,
      suppressTokens: o.suppressTokens === "vision" ? visionTokenIds(m) : o.suppressTokens,
      numSamples: g,
      seed: (o.seed ?? 0) + i,
      eosTokenIds: m.eosTokenIds,
    });
    for (const row of res.samples) out.push(row.map((x) => x.text));
    onBatch?.(Math.min(i + bs, prompts.length), prompts.length);
  }
  return out;
}

/** Options of {@link runEval}. */
export interface RunEvalOptions extends AnswerOptions {
  /** Model folder (Hugging Face Qwen2-VL layout). */
  model: string;
  /** PEFT LoRA adapter folder. */
  adapter?: string;
  /** `<format>:<path>` as for `rarl data`. */
  data: string;
  /**
   * Prompting: "reasoning" / "non-reasoning" (§3.3 inference prompts) or a training template's name
   * ("explanation-required", "short-form", "open-ended"; Appendix A), to evaluate with the prompts a model was trained on.
   */
  prompt: string;
  /**
   * Headroom: also draw this many samples per question (G, at `temperature` / `topK` / `topP`, vision ids suppressed
   * unless `suppressTokens` is given: GRPO's sampler), judge greedy and samples with the offline judge and return
   * {@link Headroom} metrics. Default 0 (none).
   */
  samples?: number;
  /** Headroom JSON to write ({metrics, items}); only with `samples`. */
  headroomOut?: string;
  /** Keep only this split (e.g. "test"); default every sample. */
  split?: string;
  /** First N samples (after the split filter). */
  limit?: number;
  /** Predictions JSONL to write (atomically). */
  out: string;
  /** `dataset` field of the records. Default: the samples' `source`. */
  dataset?: string;
  onProgress?: (done: number, total: number) => void;
  /** An already loaded model (skips loading `model`/`adapter`). */
  loaded?: EvalModel;
}

/**
 * `rarl eval`: answers every sample with the §3.3 inference system prompt (reasoning or non-reasoning, the question
 * as the user text, the image first), splits each completion into `<think>`/`<answer>`, and writes the judge's
 * predictions format {id, dataset, question, reference, prediction, reference_reasoning?, prediction_reasoning?}
 * plus `completion` (the raw text), atomically (a crash leaves the previous file or none, never part of one), under
 * the output's lock. Returns the records.
 */
export async function runEval(o: RunEvalOptions): Promise<Array<PredictionRecord & { completion: string }>> {
  return (await runEvalWithHeadroom(o)).records;
}

/** {@link runEval}, also returning the headroom metrics when `samples` > 0. */
export async function runEvalWithHeadroom(o: RunEvalOptions): Promise<{ records: Array<PredictionRecord & { completion: string }>; headroom?: Headroom }> {
  const template = BUILTIN_TEMPLATES[o.prompt];
  if (!template) {
    throw new EvalInputError(`--prompt must be one of ${Object.keys(BUILTIN_TEMPLATES).join(", ")}, got "${o.prompt}"`, { code: "EVAL_BAD_OPTION", details: { field: "prompt" } });
  }
  const G = o.samples ?? 0;
  if (!(Number.isInteger(G) && G >= 0)) throw new EvalInputError(`--samples must be an integer >= 0, got ${G}`, { code: "EVAL_BAD_OPTION", details: { field: "samples" } });
  const spec = parseDataSpec(o.data);
  if (!o.loaded) checkModelPaths(o.model, o.adapter);
  const stream = loadDataset({ format: spec.format as never, path: spec.path });
  let samples: Sample[] = await stream.toArray();
  const root = stream.root ?? path.dirname(path.resolve(spec.path));
  if (o.split) samples = samples.filter((s) => s.split === o.split);
  if (o.limit) samples = samples.slice(0, o.limit);
  if (samples.length === 0) throw new EvalInputError(`${spec.path}: no samples${o.split ? ` in split "${o.split}"` : ""}`, { code: "EVAL_NO_SAMPLES", details: { file: spec.path } });
  const prompts = samples.map((s) => ({ messages: buildPrompt(s, template), images: [imageInput(s, root)] }));
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  // One writer per predictions file: a second `rarl eval --out` on it is refused naming this process's PID.
  return withOutputLock(
    o.out,
    async () => {
      const m = o.loaded ?? (await loadEvalModel(o.model, o.adapter));
      try {
        const texts = await generateAnswers(m, prompts, o, o.onProgress);
        const records = samples.map((s, i) => {
          const { reasoning, answer } = splitThinkAnswer(texts[i]);
          const r: PredictionRecord & { completion: string } = {
            id: s.id,
            dataset: o.dataset ?? s.source,
            question: s.question,
            reference: s.answer,
            prediction: answer,
            completion: texts[i],
          };
          if (s.reasoning) r.reference_reasoning = s.reasoning;
          if (reasoning !== undefined) r.prediction_reasoning = reasoning;
          return r;
        });
        writeFileAtomic(o.out, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
        if (G === 0) return { records };
        const sampled = await generateSamples(m, prompts, { ...o, doSample: true, suppressTokens: o.suppressTokens ?? "vision", seed: (o.seed ?? 0) + 1_000_003 }, G);
        const items: HeadroomItem[] = [];
        for (const [i, r] of records.entries()) {
          const greedy = (await offlineVerdict(r)).prediction_score;
          const answers: string[] = [];
          const correct: Array<0 | 1> = [];
          for (const text of sampled[i]) {
            const { reasoning, answer } = splitThinkAnswer(text);
            answers.push(answer);
            correct.push((await offlineVerdict({ ...r, prediction: answer, prediction_reasoning: reasoning })).prediction_score);
          }
          const image = (samples[i].extra as { image_id?: unknown } | undefined)?.image_id;
          items.push({ id: r.id, image: typeof image === "string" ? image : undefined, greedy, answers, correct });
        }
        const headroom = headroomMetrics(items);
        if (o.headroomOut) {
          fs.mkdirSync(path.dirname(path.resolve(o.headroomOut)), { recursive: true });
          writeFileAtomic(o.headroomOut, `${JSON.stringify({ metrics: headroom, sampler: { temperature: o.temperature ?? 1, topK: o.topK ?? null, topP: o.topP ?? null, prompt: o.prompt }, items }, null, 1)}\n`);
        }
        return { records, headroom };
      } finally {
        if (!o.loaded) m.dispose();
      }
    },
    { command: "rarl eval" },
  );
}
