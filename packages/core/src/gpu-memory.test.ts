import { describe, expect, it } from "vitest";
import { GpuMemoryError } from "./errors";
import { budgetFromHeaps, checkFitsGpuMemory, gpuMemoryBudget } from "./gpu-memory";

describe("GPU memory budget", () => {
  it("comes from the option, then RARL_GPU_MEMORY_GIB, then the device-local heaps, else is unknown", () => {
    const heaps = [
      { size: 80 * 2 ** 30, properties: 0x1 },
      { size: 64 * 2 ** 30, properties: 0x2 }, // host-visible only: not GPU memory
    ];
    expect(gpuMemoryBudget({ bytes: 123, env: { RARL_GPU_MEMORY_GIB: "2" }, heaps })).toEqual({ bytes: 123, source: "option" });
    expect(gpuMemoryBudget({ env: { RARL_GPU_MEMORY_GIB: "0.5" }, heaps })).toEqual({ bytes: 2 ** 29, source: "RARL_GPU_MEMORY_GIB=0.5" });
    expect(gpuMemoryBudget({ env: {}, heaps })).toEqual({ bytes: 80 * 2 ** 30, source: "adapter memory heaps" });
    expect(gpuMemoryBudget({ env: {} })).toBeNull();
    expect(budgetFromHeaps([{ size: 5, properties: 0x2 }])).toBeNull();
  });

  it("a malformed RARL_GPU_MEMORY_GIB is a GpuMemoryError naming the variable", () => {
    const err = (() => {
      try {
        gpuMemoryBudget({ env: { RARL_GPU_MEMORY_GIB: "40GB" } });
      } catch (e) {
        return e as GpuMemoryError;
      }
    })();
    expect(err).toBeInstanceOf(GpuMemoryError);
    expect(err?.code).toBe("GPU_MEMORY_BUDGET");
    expect(err?.message).toMatch(/RARL_GPU_MEMORY_GIB must be a positive number of GiB, got "40GB"/);
  });
});

describe("checkFitsGpuMemory", () => {
  const tensors: [string, number][] = [
    ["a", 400],
    ["b", 300],
    ["c", 200],
  ];

  it("passes when weights + margin fit, to the byte", () => {
    expect(() => checkFitsGpuMemory(tensors, { bytes: 1000, source: "option" }, 100)).not.toThrow();
  });

  it("names the first tensor past the budget, the bytes asked for, the total and the limit", () => {
    const err = (() => {
      try {
        checkFitsGpuMemory(tensors, { bytes: 1000, source: "RARL_GPU_MEMORY_GIB=x" }, 400);
      } catch (e) {
        return e as GpuMemoryError;
      }
    })();
    expect(err).toBeInstanceOf(GpuMemoryError);
    expect(err?.code).toBe("GPU_MODEL_TOO_BIG");
    expect(err?.details).toEqual({ tensor: "b", bytes: 300, reached: 700, total: 900, margin: 400, limit: 1000, source: "RARL_GPU_MEMORY_GIB=x" });
    expect(err?.message).toMatch(/weights need 900 bytes .* \+ a margin of 400 bytes .* above the budget of 1000 bytes .*\(RARL_GPU_MEMORY_GIB=x\); the first tensor past it is "b" \(300 bytes, which would bring the weights to 700 bytes\)/);
  });
});
