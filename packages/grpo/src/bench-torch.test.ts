import { spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  compareWithTorch,
  formatTargets,
  fp32PeakTflops,
  issueTargets,
  type OurFigures,
  parseTorchRefResult,
  probeTorch,
  runTorchReference,
  TorchReferenceError,
  type TorchRefSpec,
} from "./bench-torch";

const script = fileURLToPath(new URL("../bench/torch_ref.py", import.meta.url));

/** A reference output as torch_ref.py prints it (numbers made up, chosen so the ratios are exact). */
const sample = {
  versions: { python: "3.11.7", torch: "2.5.1", transformers: "4.57.1", peft: "0.17.1" },
  device: "cuda",
  deviceName: "NVIDIA H200",
  cuda: true,
  matmul: { n: 4096, float32Tflops: 50, tf32Tflops: 400 },
  runs: [
    {
      config: "2b",
      dtype: "float32",
      attn: "eager",
      prefillTokS: 4000,
      decodeTokS: { "1": 40, "8": 320 },
      logprobsS: 0.5,
      loraFwdBwdS: 1,
      grpoStep: { totalS: 10, phases: { generation: 6, logprobs: 0.5, backward: 3, optimizer: 0.5 } },
      peakMemBytes: 20 * 2 ** 30,
    },
    { config: "2b", dtype: "float32", attn: "sdpa", error: "OutOfMemoryError: CUDA out of memory" },
    { config: "2b", dtype: "bfloat16", attn: "sdpa", skipped: "time budget of 240 s spent (251 s)" },
  ],
  elapsedS: 251,
};

const ours: OurFigures = {
  matmulTflops: 20,
  peakBytes: 12 * 2 ** 30,
  configs: [
    { key: "2b", label: "Qwen2-VL-2B config", prefillTokS: 1000, decodeTokS: { "1": 10, "8": 50 }, grpoStepS: 25, phases: { generation: 15, scoring: 0, logprobs: 2, backward: 6, optimizer: 2 } },
  ],
};

describe("torch_ref.py output (the JSON contract)", () => {
  it("a sample output parses; extra noise lines before the JSON are ignored", () => {
    const r = parseTorchRefResult(`some warning\n${JSON.stringify(sample)}\n`);
    expect(r.deviceName).toBe("NVIDIA H200");
    expect(r.runs).toHaveLength(3);
  });

  it("a missing or mistyped field is a TorchReferenceError naming it", () => {
    const broken = structuredClone(sample) as Record<string, any>;
    delete broken.runs[0].grpoStep.phases.backward;
    expect(() => parseTorchRefResult(JSON.stringify(broken))).toThrow(/runs\[0\]\.grpoStep\.phases\.backward should be a number, got undefined/);
    const broken2 = structuredClone(sample) as Record<string, any>;
    broken2.runs[0].dtype = "fp16";
    expect(() => parseTorchRefResult(JSON.stringify(broken2))).toThrow(/runs\[0\]\.dtype should be "float32" or "bfloat16"/);
    expect(() => parseTorchRefResult("Traceback (most recent call last):")).toThrow(TorchReferenceError);
  });

  it('{"error": ...} (torch missing) is TORCH_REF_UNAVAILABLE', () => {
    try {
      parseTorchRefResult('{"error": "torch, transformers or peft do not import: ModuleNotFoundError: No module named \'torch\'"}');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(TorchReferenceError);
      expect((e as TorchReferenceError).code).toBe("TORCH_REF_UNAVAILABLE");
      expect((e as Error).message).toMatch(/PyTorch reference not run: .*No module named 'torch'/);
    }
  });
});

describe("our figures as ratios to PyTorch's", () => {
  it("rates are ours / PyTorch, times PyTorch / ours; failed and skipped runs are listed, not tabulated", () => {
    const lines = compareWithTorch(ours, parseTorchRefResult(JSON.stringify(sample))).join("\n");
    expect(lines).toMatch(/torch 2\.5\.1, transformers 4\.57\.1, peft 0\.17\.1 .* on NVIDIA H200 \(CUDA\)/);
    expect(lines).toMatch(/raw float32 matmul: ours 20\.000 TFLOP\/s; PyTorch 4096\^3 50\.000 TFLOP\/s \(TF32 off\) = 0\.40x; PyTorch with TF32 400 TFLOP\/s/);
    expect(lines).toContain("| figure | ours | PyTorch float32 eager |");
    expect(lines).toContain("| prefill (tok/s) | 1000 | 4000 (0.25x) |");
    expect(lines).toContain("| decode G = 1 (tok/s) | 10.00 | 40.00 (0.25x) |");
    expect(lines).toContain("| decode G = 8 (tok/s) | 50.00 | 320 (0.16x) |");
    expect(lines).toContain("| teacher-forced log-probs, no grad (s) | 2.00 | 0.50 (0.25x) |");
    expect(lines).toContain("| LoRA forward+backward (s) | 6.00 | 1.00 (0.17x) |");
    expect(lines).toContain("| GRPO step (s) | 25.00 | 10.00 (0.40x) |");
    expect(lines).toContain("|   step: generation (s) | 15.00 | 6.00 (0.40x) |");
    expect(lines).toContain("- PyTorch float32 sdpa on 2b: failed (OutOfMemoryError: CUDA out of memory)");
    expect(lines).toContain("- PyTorch bfloat16 sdpa on 2b: skipped (time budget of 240 s spent (251 s))");
    expect(lines).toContain("- PyTorch bfloat16 eager on 2b: not in the reference's output");
    expect(lines).toContain("PyTorch peak GPU memory (torch.cuda.max_memory_allocated) on 2b: float32 eager 20480 MiB; ours (tfjs, the whole bench): 12288 MiB");
  });
});

describe("issue-14 targets", () => {
  it("GPU float32 peaks by name; unknown GPUs have none", () => {
    expect(fp32PeakTflops("NVIDIA H100 80GB HBM3")).toEqual({ name: "H100 SXM", tflops: 67 });
    expect(fp32PeakTflops("NVIDIA H100 PCIe")).toEqual({ name: "H100 PCIe", tflops: 51 });
    expect(fp32PeakTflops("NVIDIA H200")).toEqual({ name: "H200 SXM", tflops: 67 });
    expect(fp32PeakTflops("NVIDIA A100-SXM4-80GB")).toEqual({ name: "A100", tflops: 19.5 });
    expect(fp32PeakTflops("NVIDIA H200 NVL")).toBeNull();
    expect(fp32PeakTflops("llvmpipe (LLVM 15.0.6, 256 bits)")).toBeNull();
  });

  it("met / not met from the figures: step 25 s vs 10 s is 2.5x (not met), decode 5x (met), matmul 29.9% of 67 (met)", () => {
    const v = issueTargets(ours, parseTorchRefResult(JSON.stringify(sample)), "NVIDIA H200");
    expect(v.map((x) => [x.target, x.status])).toEqual([
      ["2B GRPO step <= 2x PyTorch eager float32", "not met"],
      ["decode tok/s at G = 8 >= 4x G = 1", "met"],
      ["matmul >= 25% of the GPU's float32 peak", "met"],
    ]);
    expect(v[0].detail).toBe("ours 25.00 s / PyTorch 10.00 s = 2.50x");
    expect(v[1].detail).toBe("2B config: 50.00 / 10.00 tok/s = 5.00x");
    expect(v[2].detail).toBe("ours 20.000 TFLOP/s = 29.9% of the H200 SXM's 67 TFLOP/s");
    const faster = { ...ours, matmulTflops: 13, configs: [{ ...ours.configs[0], grpoStepS: 20, decodeTokS: { "1": 10, "8": 39 } }] };
    expect(issueTargets(faster, parseTorchRefResult(JSON.stringify(sample)), "NVIDIA H100 PCIe").map((x) => x.status)).toEqual(["met", "not met", "met"]);
  });

  it("without the reference or the 2B config: not measured, the bench config's decode named, peak unknown off the table", () => {
    const bench: OurFigures = { matmulTflops: 0.001, peakBytes: 0, configs: [{ ...ours.configs[0], key: "bench", label: "bench config", decodeTokS: { "1": 0.2, "8": 0.7 } }] };
    const v = issueTargets(bench, null, "llvmpipe-llvm-15", "torch is not installed");
    expect(v.map((x) => x.status)).toEqual(["not measured", "not met", "peak unknown"]);
    expect(v[0].detail).toBe("the 2B config was not run");
    expect(v[1].detail).toBe("bench config (2B not run): 0.70 / 0.20 tok/s = 3.50x");
    expect(v[2].detail).toMatch(/^ours 0\.001 TFLOP\/s on "llvmpipe-llvm-15", not in the table \(H100 PCIe, H100 SXM, H200 SXM, A100\)$/);
    expect(issueTargets(ours, null, "NVIDIA H200", "torch is not installed")[0]).toEqual({
      target: "2B GRPO step <= 2x PyTorch eager float32",
      status: "not measured",
      detail: "ours 25.00 s; torch is not installed",
    });
    expect(formatTargets(v)[1]).toBe("  - 2B GRPO step <= 2x PyTorch eager float32: NOT MEASURED (the 2B config was not run)");
  });

  it("on a software adapter no target is met or not met: the computed ratio is kept in the detail", () => {
    const bench: OurFigures = { matmulTflops: 0.003, peakBytes: 0, configs: [{ ...ours.configs[0], key: "bench", label: "bench config", decodeTokS: { "1": 1.6, "8": 10.9 } }] };
    const v = issueTargets(bench, null, "llvmpipe (software adapter)", "torch is not installed", true);
    expect(v.map((x) => x.status)).toEqual(["not measured", "not measured", "peak unknown"]);
    expect(v[1].detail).toBe("on a software adapter, not a GPU: bench config (2B not run): 10.90 / 1.60 tok/s = 6.81x");
    expect(issueTargets(bench, null, "llvmpipe (software adapter)", "torch is not installed", false)[1].status).toBe("met");
  });
});

const python = spawnSync("python3", ["--version"]).status === 0;

describe.skipIf(!python)(`torch_ref.py${python ? "" : " (skipped: no python3 here)"}`, () => {
  it("compiles (py_compile)", () => {
    const r = spawnSync("python3", ["-c", "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)", script, path.join(os.tmpdir(), `torch_ref-${process.pid}.pyc`)], {
      encoding: "utf8",
    });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("where torch does not import (python3 -S: no site-packages), the probe says why and the script prints the error object", () => {
    const probe = probeTorch(["python3", "-S"]);
    expect(probe.ok).toBe(false);
    expect(!probe.ok && probe.reason).toMatch(/`python3 -S -c "import torch, transformers, peft"` fails here: ModuleNotFoundError: No module named 'torch'/);
    const missing = probeTorch(["/nonexistent/python3"]);
    expect(!missing.ok && missing.reason).toMatch(/ENOENT/);
    const spec: TorchRefSpec = {
      configs: [],
      runs: [],
      decodeGs: [1, 8],
      decodeTokens: 8,
      completionTokens: 8,
      numGenerations: 8,
      loraR: 8,
      loraAlpha: 16,
      beta: 0.04,
      learningRate: 1e-5,
      matmulN: 64,
      matmulReps: 1,
      timeBudgetS: 10,
      seed: 1,
    };
    expect(() => runTorchReference(spec, { script, python: ["python3", "-S"], timeoutS: 60 })).toThrow(/PyTorch reference not run: torch, transformers or peft do not import: ModuleNotFoundError: No module named 'torch'/);
  });
});
