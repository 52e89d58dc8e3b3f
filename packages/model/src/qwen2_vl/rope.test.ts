import { describe, expect, it } from "vitest";
import { loadQwen2VLConfig } from "./config";
import { maxAbsDiff, openReference, refArray, refRows, tinyFixtureDir } from "./parity_fixture";
import { decodePositions, getRopeIndex, mropeCosSin, ropeInvFreq, visionRotPosEmb } from "./rope";

const cfg = loadQwen2VLConfig(tinyFixtureDir());
const ref = openReference();

function refPositions(name: string): number[][][] {
  const { shape, data } = refArray(ref, `${name}.position_ids`);
  const [, B, S] = shape;
  return [0, 1, 2].map((r) => Array.from({ length: B }, (_, b) => Array.from({ length: S }, (_, s) => (data as number[])[(r * B + b) * S + s])));
}

describe("getRopeIndex (transformers get_rope_index)", () => {
  for (const name of ["image_prompt", "text_only", "batch", "completion"]) {
    it(`${name}: 3-D positions and rope_deltas exact`, () => {
      const ids = refRows(ref, `${name}.input_ids`);
      const mask = refRows(ref, `${name}.attention_mask`);
      const grid = ref.has(`${name}.image_grid_thw`) ? refRows(ref, `${name}.image_grid_thw`) : ids.some((r) => r.includes(cfg.imageTokenId)) ? refRows(ref, "image_prompt.image_grid_thw") : null;
      const r = getRopeIndex(ids, grid, mask, cfg);
      expect(r.positionIds).toEqual(refPositions(name));
      expect(r.ropeDeltas).toEqual(refArray(ref, `${name}.rope_deltas`).data);
    });
  }
  it("image tokens get (t, row, col) offsets; height and width rows are not swapped on a non-square grid", () => {
    // text(2) <vs> 2x3 merged grid (h=4, w=6 patches) <ve> text(1)
    const I = cfg.imageTokenId;
    const ids = [[5, 6, cfg.visionStartTokenId, I, I, I, I, I, I, cfg.visionEndTokenId, 9]];
    const { positionIds, ropeDeltas } = getRopeIndex(ids, [[1, 4, 6]], null, cfg);
    expect(positionIds[0][0]).toEqual([0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7]);
    expect(positionIds[1][0]).toEqual([0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7]);
    expect(positionIds[2][0]).toEqual([0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7]);
    expect(ropeDeltas).toEqual([8 - 11]);
  });
  it("two images in one row: each image starts after the previous text, text resumes at max + 1", () => {
    const I = cfg.imageTokenId;
    const vs = cfg.visionStartTokenId;
    const ve = cfg.visionEndTokenId;
    // t0 <vs> [2x2 merged grid] <ve> t1 <vs> [1x3 merged grid] <ve> t2   (grids in patches: [1,4,4] and [1,2,6])
    const ids = [[7, vs, I, I, I, I, ve, 8, vs, I, I, I, ve, 9]];
    const r = getRopeIndex(ids, [
      [1, 4, 4],
      [1, 2, 6],
    ], null, cfg);
    // image 1 at base 2 (h, w in 0..1); "<ve> 8 <vs>" resume at 3 + 1 = 4; image 2 at base 7 (w 0..2); then 9 + 1
    expect(r.positionIds[0][0]).toEqual([0, 1, 2, 2, 2, 2, 4, 5, 6, 7, 7, 7, 10, 11]);
    expect(r.positionIds[1][0]).toEqual([0, 1, 2, 2, 3, 3, 4, 5, 6, 7, 7, 7, 10, 11]);
    expect(r.positionIds[2][0]).toEqual([0, 1, 2, 3, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(r.ropeDeltas).toEqual([12 - 14]);
  });
  it("left padding gets position 1; text-only rows count only unmasked tokens", () => {
    const r = getRopeIndex([[0, 0, 7, 8, 9]], null, [[0, 0, 1, 1, 1]], cfg);
    for (const row of r.positionIds) expect(row[0]).toEqual([1, 1, 0, 1, 2]);
    expect(r.ropeDeltas).toEqual([3 - 5]);
    expect(getRopeIndex([[7, 8]], null, null, cfg).positionIds[1][0]).toEqual([0, 1]);
  });
  it("decode positions = cache length + i + rope delta in all three rows", () => {
    expect(decodePositions(43, 2, [-6, 0])).toEqual([
      [
        [37, 38],
        [43, 44],
      ],
      [
        [37, 38],
        [43, 44],
      ],
      [
        [37, 38],
        [43, 44],
      ],
    ]);
  });
});

describe("M-RoPE tables", () => {
  it("each frequency uses the position row of its mrope_section (t | h | w), duplicated over both halves", () => {
    // one token with distinct t/h/w positions
    const pos = [[[3]], [[5]], [[11]]];
    const { cos, sin } = mropeCosSin(pos, 16, 1e6, [2, 3, 3]);
    const inv = ropeInvFreq(16, 1e6);
    const rows = [3, 3, 5, 5, 5, 11, 11, 11];
    for (let i = 0; i < 8; i++) {
      expect(cos[i]).toBeCloseTo(Math.cos(rows[i] * inv[i]), 6);
      expect(cos[8 + i]).toBe(cos[i]);
      expect(sin[i]).toBeCloseTo(Math.sin(rows[i] * inv[i]), 6);
    }
  });
  it("inverse frequencies are base^(-2i/dim)", () => {
    const inv = ropeInvFreq(16, 1e6);
    expect(inv[0]).toBe(1);
    expect(inv[1]).toBeCloseTo(1e6 ** (-2 / 16), 7);
    expect(inv.length).toBe(8);
  });
});

describe("vision 2-D rotary", () => {
  it("matches image_prompt.vision.rot_pos_emb (merge-window order, theta 10000)", () => {
    const grid = refRows(ref, "image_prompt.image_grid_thw");
    const got = visionRotPosEmb(grid, cfg.visionConfig.embedDim / cfg.visionConfig.numHeads, cfg.visionConfig.spatialMergeSize);
    expect(maxAbsDiff(got, refArray(ref, "image_prompt.vision.rot_pos_emb").data as Float32Array)).toBeLessThan(1e-6);
  });
  it("rows are (row index · freqs, col index · freqs) in 2x2 merge-window order", () => {
    const e = visionRotPosEmb([[1, 2, 4]], 8, 2); // dim 4: 2 freqs (1, 0.01)
    const at = (p: number) => Array.from(e.subarray(p * 4, p * 4 + 4));
    expect(at(0)).toEqual([0, 0, 0, 0]);
    expect(at(1)[2]).toBe(1); // (h0, w1)
    expect(at(2)[0]).toBe(1); // (h1, w0)
    expect(at(4)[2]).toBe(2); // second window starts at w = 2
  });
});
