import { describe, expect, it } from "vitest";
import { StopTracker } from "./stopping";

// Toy "tokenizer": id -> string; id 0 is a special EOS (skipped when decoding).
const vocab = ["<eos>", "a", "b", "</", "answer", ">", " ", "é"];
const decode = (ids: number[]) =>
  ids
    .filter((i) => i !== 0)
    .map((i) => vocab[i])
    .join("");

describe("StopTracker", () => {
  it("stops on an EOS id, keeping it in ids but not in the text", () => {
    const t = new StopTracker({ eosTokenIds: [0], stopStrings: [], maxNewTokens: 10 }, decode);
    expect(t.push(1, -0.1)).toBe(false);
    expect(t.push(0, -0.2)).toBe(true);
    expect(t.finishReason).toBe("stop");
    expect(t.ids).toEqual([1, 0]);
    expect(t.logprobs).toEqual([-0.1, -0.2]);
    expect(t.text()).toBe("a");
    expect(t.push(1, -1)).toBe(true); // ignored once finished
    expect(t.ids).toEqual([1, 0]);
  });

  it("stops on max_new_tokens with reason length", () => {
    const t = new StopTracker({ eosTokenIds: [0], stopStrings: [], maxNewTokens: 2 }, decode);
    t.push(1, 0);
    expect(t.done).toBe(false);
    t.push(2, 0);
    expect(t.finishReason).toBe("length");
    expect(t.text()).toBe("ab");
  });

  it("stops on a stop string spread over tokens and trims it from the text", () => {
    const t = new StopTracker({ eosTokenIds: [0], stopStrings: ["</answer>", "zz"], maxNewTokens: 20 }, decode);
    for (const id of [1, 6, 2, 3, 4]) expect(t.push(id, 0)).toBe(false);
    expect(t.push(5, 0)).toBe(true);
    expect(t.finishReason).toBe("stop");
    expect(t.ids).toEqual([1, 6, 2, 3, 4, 5]);
    expect(t.text()).toBe("a b");
  });

  it("picks the earliest of several stop strings in the text", () => {
    const t = new StopTracker({ eosTokenIds: [], stopStrings: ["b", "a b"], maxNewTokens: 20 }, decode);
    t.push(1, 0);
    t.push(6, 0);
    expect(t.push(2, 0)).toBe(true);
    expect(t.text()).toBe("");
  });

  it("a stop string beats max_new_tokens on the same step", () => {
    const t = new StopTracker({ eosTokenIds: [], stopStrings: ["b"], maxNewTokens: 2 }, decode);
    t.push(1, 0);
    t.push(2, 0);
    expect(t.finishReason).toBe("stop");
    expect(t.text()).toBe("a");
  });
});
