import { describe, expect, it } from "vitest";
import { StopTracker } from "./stopping";

// Toy "tokenizer": id -> string; id 0 is a special EOS (skipped when decoding).
const vocab = ["<eos>", "a", "b", "</", "answer", ">", " ", "é"];
const decode = (ids: number[]) =>
  ids
    .filter((i) => i !== 0)
    .map((i) => vocab[i])
    .join("");

/** Pushes ids one by one, passing the decoded text as generate() does. */
function feed(t: StopTracker, ids: number[]): boolean[] {
  const out: boolean[] = [];
  for (const id of ids) out.push(t.push(id, 0, decode([...t.ids, id])));
  return out;
}

describe("StopTracker", () => {
  it("stops on an EOS id, keeping it in ids but not in the text", () => {
    const t = new StopTracker({ eosTokenIds: [0], stopStrings: [], maxNewTokens: 10 });
    expect(t.push(1, -0.1)).toBe(false);
    expect(t.push(0, -0.2)).toBe(true);
    expect(t.finishReason).toBe("stop");
    expect(t.ids).toEqual([1, 0]);
    expect(t.logprobs).toEqual([-0.1, -0.2]);
    expect(t.cutText).toBeNull();
    expect(t.push(1, -1)).toBe(true); // ignored once finished
    expect(t.ids).toEqual([1, 0]);
  });

  it("stops on max_new_tokens with reason length", () => {
    const t = new StopTracker({ eosTokenIds: [0], stopStrings: [], maxNewTokens: 2 });
    t.push(1, 0);
    expect(t.done).toBe(false);
    t.push(2, 0);
    expect(t.finishReason).toBe("length");
  });

  it("stops on a stop string spread over tokens and trims it from the text", () => {
    const t = new StopTracker({ eosTokenIds: [0], stopStrings: ["</answer>", "zz"], maxNewTokens: 20 });
    expect(feed(t, [1, 6, 2, 3, 4, 5])).toEqual([false, false, false, false, false, true]);
    expect(t.finishReason).toBe("stop");
    expect(t.ids).toEqual([1, 6, 2, 3, 4, 5]);
    expect(t.cutText).toBe("a b");
    expect(() => new StopTracker({ eosTokenIds: [], stopStrings: ["x"], maxNewTokens: 2 }).push(1, 0)).toThrow(/decoded text/);
  });

  it("picks the earliest of several stop strings in the text", () => {
    const t = new StopTracker({ eosTokenIds: [], stopStrings: ["b", "a b"], maxNewTokens: 20 });
    expect(feed(t, [1, 6, 2])).toEqual([false, false, true]);
    expect(t.cutText).toBe("");
  });

  it("a stop string beats max_new_tokens on the same step", () => {
    const t = new StopTracker({ eosTokenIds: [], stopStrings: ["b"], maxNewTokens: 2 });
    feed(t, [1, 2]);
    expect(t.finishReason).toBe("stop");
    expect(t.cutText).toBe("a");
  });
});
