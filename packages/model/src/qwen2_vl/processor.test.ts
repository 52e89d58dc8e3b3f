import fs from "node:fs";
import path from "node:path";
import { fixturesDir } from "@rarl/core";
import { describe, expect, it } from "vitest";
import { Qwen2VLProcessor } from "./processor";
import { ProcessorError } from "./processor_errors";
import { Qwen2Tokenizer } from "./tokenizer";

function fixture(): string {
  return path.join(fixturesDir(), "qwen2vl-tiny");
}
const FX = fixture();
const OUT = JSON.parse(fs.readFileSync(path.join(FX, "reference", "outputs.json"), "utf8"));
const processor = Qwen2VLProcessor.fromPretrained(FX);
/** Images of each prompt case, in slot order (from the fixture's reference: image_prompt uses disc, batch disc + checker). */
const imagesByGrid = (grids: number[][] | null): string[] =>
  (grids ?? []).map((g) => {
    const entry = Object.values(OUT.images as Record<string, any>).find((im) => im.image_grid_thw.join() === g.join());
    return path.join(FX, entry.file);
  });

describe("Qwen2VLProcessor on the fixture prompts", () => {
  for (const name of Object.keys(OUT.prompts)) {
    it(`${name}: rendered text, expanded text, input_ids and attention_mask match transformers`, async () => {
      const p = OUT.prompts[name];
      const rendered = p.messages.map((m: any) => processor.applyChatTemplate(m, { addGenerationPrompt: true }));
      expect(rendered).toEqual(p.rendered);
      const out = await processor.process({ text: rendered, images: imagesByGrid(p.image_grid_thw) });
      expect(out.expandedText).toEqual(p.expanded);
      expect(out.inputIds).toEqual(p.input_ids);
      expect(out.attentionMask).toEqual(p.attention_mask);
      expect(out.imageGridThw).toEqual(p.image_grid_thw ?? []);
    });
  }

  it("right padding puts the pad ids after the prompt", async () => {
    const p = OUT.prompts.batch;
    const rendered = p.messages.map((m: any) => processor.applyChatTemplate(m, { addGenerationPrompt: true }));
    const out = await processor.process({ text: rendered, images: imagesByGrid(p.image_grid_thw), padding: "right" });
    const n = p.attention_mask[1].filter((x: number) => x === 1).length;
    expect(out.inputIds[1].slice(0, n)).toEqual(p.input_ids[1].slice(-n));
    expect(out.inputIds[1].slice(n).every((x) => x === 151643)).toBe(true);
  });

  it("names both counts when <|image_pad|> slots and images differ", async () => {
    const text = processor.applyChatTemplate(OUT.prompts.image_prompt.messages[0], { addGenerationPrompt: true });
    const err = await processor.process({ text, images: [] }).catch((e) => e);
    expect(err).toBeInstanceOf(ProcessorError);
    expect(err.code).toBe("IMAGE_PAD_MISMATCH");
    expect(err.message).toMatch(/1 <\|image_pad\|> slot\(s\) but 0 image\(s\)/);
    const two = path.join(FX, "images", "disc_100x80.png");
    await expect(processor.process({ text, images: [two, two] })).rejects.toThrow(/1 .* but 2 image/);
  });

  it("expands two images in one prompt in order", async () => {
    const msgs = [{ role: "user", content: [{ type: "image" }, { type: "image" }, { type: "text", text: "Compare." }] }] as any;
    const text = processor.applyChatTemplate(msgs, { addGenerationPrompt: true });
    const out = await processor.process({ text, images: [path.join(FX, "images", "checker_56x140.png"), path.join(FX, "images", "disc_100x80.png")] });
    expect(out.imageGridThw).toEqual([[1, 10, 4], [1, 6, 8]]);
    expect(out.inputIds[0].filter((t) => t === 151655).length).toBe(22);
    expect(out.pixelShape).toEqual([88, 1176]);
  });

  it("rejects sequences above maxLength", async () => {
    await expect(processor.process({ text: "hello world", maxLength: 1 })).rejects.toThrow(/more than the maximum 1/);
  });
});

describe("Qwen2Tokenizer", () => {
  it("has Qwen2-VL's special ids and decodes with special tokens skipped", async () => {
    const tok = processor.tokenizer;
    expect(tok.specialIds.pad).toBe(151643);
    expect(tok.specialIds.eos).toBe(151645);
    expect(tok.specialIds.imagePad).toBe(151655);
    const ids = OUT.prompts.text_only.input_ids[0];
    const text = await tok.decode(ids);
    expect(text).not.toMatch(/<\|im_start\|>/);
    expect(text).toMatch(/Is there an abnormality in the left lung\?/);
    expect(await tok.decode(ids, { skipSpecialTokens: false })).toBe(OUT.prompts.text_only.rendered[0]);
    // <think> is plain text in Qwen2-VL, not one token
    expect((await tok.encode("<think>")).length).toBeGreaterThan(1);
  });

  it("loads from a separate tokenizer path and reports a missing one", () => {
    const t = Qwen2Tokenizer.fromFile(path.join(FX, "tokenizer.json"));
    expect(t.tokenToId("<|vision_start|>")).toBe(151652);
    expect(() => Qwen2VLProcessor.fromPretrained(FX, { tokenizerPath: "/nonexistent/tokenizer.json" })).toThrow(/nonexistent\/tokenizer\.json/);
    const tmp = fs.mkdtempSync(path.join(fs.realpathSync("/tmp"), "tok-"));
    fs.writeFileSync(path.join(tmp, "tokenizer.json"), '{"model": 3');
    const err = (() => {
      try {
        Qwen2Tokenizer.fromFile(path.join(tmp, "tokenizer.json"));
      } catch (e) {
        return e as ProcessorError;
      }
    })();
    expect(err).toBeInstanceOf(ProcessorError);
    expect(err!.code).toBe("PROCESSOR_CORRUPT_FILE");
    expect(err!.message).toMatch(/tokenizer\.json/);
    fs.rmSync(tmp, { recursive: true });
  });
});
