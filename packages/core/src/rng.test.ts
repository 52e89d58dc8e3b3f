import { describe, expect, it } from "vitest";
import { Rng } from "./rng";

describe("Rng", () => {
  it("is deterministic for a seed and differs across seeds", () => {
    const a = new Rng(1);
    const b = new Rng(1);
    const c = new Rng(2);
    const xa = Array.from({ length: 5 }, () => a.random());
    expect(Array.from({ length: 5 }, () => b.random())).toEqual(xa);
    expect(Array.from({ length: 5 }, () => c.random())).not.toEqual(xa);
  });
  it("restores state exactly", () => {
    const a = new Rng(7);
    a.normal();
    const st = a.getState();
    const next = [a.random(), a.normal(), a.int(10)];
    const b = Rng.fromState(JSON.parse(JSON.stringify(st)));
    expect([b.random(), b.normal(), b.int(10)]).toEqual(next);
  });
  it("has roughly uniform mean and normal moments", () => {
    const r = new Rng(3);
    let s = 0;
    let s2 = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const x = r.normal();
      s += x;
      s2 += x * x;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.03);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.05);
  });
});
