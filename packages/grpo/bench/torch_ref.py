#!/usr/bin/env python3
"""PyTorch reference for `npm run bench:gpu` (packages/grpo/bench/gpu.ts runs it; see src/bench-torch.ts).

Usage: python3 torch_ref.py SPEC.json

SPEC (written by gpu.ts; TorchRefSpec in src/bench-torch.ts): {"configs": [{"label", "config": <config.json dict>,
"prompt": {"inputIds", "imageGridThw"}}], "runs": [{"config": <label>, "dtype": "float32"|"bfloat16",
"attn": "eager"|"sdpa"}, ...] in the order to run them, "decodeGs", "decodeTokens", "completionTokens",
"numGenerations", "loraR", "loraAlpha", "beta", "learningRate", "matmulN", "matmulReps", "timeBudgetS", "seed"}.

Runs, on the same machine as the webgpu bench (CUDA if available, else CPU), the same work with transformers'
Qwen2VLForConditionalGeneration built from each config in the spec with random weights:
  - prefill: one forward of the spec's prompt (with its image) and a KV cache, logits of the last position only;
  - decode tok/s at each G in spec["decodeGs"] (generate with sampling, temperature 1, no top-k/top-p, exactly
    decodeTokens new tokens; the rate counts the tokens after the first, over the time after the first, as ours);
  - teacher-forced log-probs of G completions (no grad);
  - a LoRA forward+backward with PEFT (r, alpha from the spec, q/k/v/o_proj of the language model);
  - one GRPO step with our phases: generation (G completions, LoRA on), logprobs (reference log-probs with the
    adapter disabled, no grad), backward (policy log-probs, the GRPO loss with the KL term, backward), optimizer
    (AdamW on the LoRA parameters);
in each dtype x attn_implementation of the spec (float32/bfloat16 x eager/sdpa), with torch.cuda.max_memory_allocated,
and raw float32 matmul TFLOP/s (TF32 off; the TF32 rate beside it). Runs stop being started once spec["timeBudgetS"]
is spent (each later one is listed as skipped, with the reason).

Prints one JSON object on stdout (the contract is parseTorchRefResult in packages/grpo/src/bench-torch.ts); progress
goes to stderr. Exit 0 when the JSON was printed, also when single runs failed (each carries its error); exit 2 with
{"error": ...} when torch, transformers or peft do not import.
"""

import inspect
import json
import platform
import sys
import time


def log(*a):
    print("[torch_ref]", *a, file=sys.stderr, flush=True)


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(2)


def main():
    if len(sys.argv) != 2:
        fail("usage: torch_ref.py SPEC.json")
    with open(sys.argv[1], encoding="utf8") as f:
        spec = json.load(f)
    try:
        import torch
        import transformers
        import peft
        from peft import LoraConfig, get_peft_model
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, StoppingCriteria, StoppingCriteriaList
    except Exception as e:  # noqa: BLE001 - any import failure means "no reference here"
        fail(f"torch, transformers or peft do not import: {type(e).__name__}: {e}")

    t_start = time.perf_counter()
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    device_name = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    seed = int(spec.get("seed", 1))
    torch.manual_seed(seed)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def elapsed():
        return time.perf_counter() - t_start

    # ---- raw matmul ----
    def matmul_tflops(n, reps, tf32):
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            a = torch.randn(n, n, device=dev, dtype=torch.float32)
            b = torch.randn(n, n, device=dev, dtype=torch.float32)
            torch.matmul(a, b)
            sync()
            t = time.perf_counter()
            for _ in range(reps):
                torch.matmul(a, b)
            sync()
            s = time.perf_counter() - t
            return 2 * n**3 * reps / s / 1e12
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev

    n = int(spec.get("matmulN", 4096))
    reps = int(spec.get("matmulReps", 20))
    matmul = {"n": n, "float32Tflops": matmul_tflops(n, reps, False)}
    if cuda:
        matmul["tf32Tflops"] = matmul_tflops(n, reps, True)
    log(f"matmul {n}: {matmul}")

    G_list = [int(g) for g in spec.get("decodeGs", [1, 8])]
    G = int(spec.get("numGenerations", 8))
    T_dec = int(spec["decodeTokens"])
    T = int(spec["completionTokens"])
    beta = float(spec.get("beta", 0.04))
    lr = float(spec.get("learningRate", 1e-5))
    budget = float(spec.get("timeBudgetS", 240))
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}

    class Clock(StoppingCriteria):
        """Called once after each generated token: records when (after a device sync); never stops generation."""

        def __init__(self):
            self.times = []

        def __call__(self, input_ids, scores, **kwargs):
            sync()
            self.times.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def build(cfg_json, dtype, attn):
        config = Qwen2VLConfig(**cfg_json)
        kw = {"attn_implementation": attn}
        params = inspect.signature(Qwen2VLForConditionalGeneration._from_config).parameters
        has_var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
        if "torch_dtype" in params or has_var_kw:
            kw["torch_dtype"] = dtype
        with torch.device(dev):
            model = Qwen2VLForConditionalGeneration._from_config(config, **kw)
        model = model.to(device=dev, dtype=dtype)
        model.eval()
        return config, model

    def forward_kwargs(model):
        names = inspect.signature(model.forward).parameters
        if "logits_to_keep" in names:
            return "logits_to_keep"
        if "num_logits_to_keep" in names:
            return "num_logits_to_keep"
        return None

    def run_one(item, dtype_name, attn):
        cfg_json = item["config"]
        prompt = item["prompt"]
        dtype = dtypes[dtype_name]
        if cuda:
            torch.cuda.empty_cache()
        config, model = build(cfg_json, dtype, attn)
        if cuda:
            torch.cuda.reset_peak_memory_stats()  # after the build: a float32 init cast to bf16 is not the run's peak
        keep = forward_kwargs(model)
        ids = torch.tensor([prompt["inputIds"]], dtype=torch.long, device=dev)
        P = ids.shape[1]
        grid = torch.tensor(prompt["imageGridThw"], dtype=torch.long, device=dev)
        n_patches = int(sum(t * h * w for t, h, w in prompt["imageGridThw"]))
        vc = config.vision_config
        patch_dim = vc.in_channels * vc.temporal_patch_size * vc.patch_size**2 if hasattr(vc, "in_channels") else 3 * vc.temporal_patch_size * vc.patch_size**2
        pv = torch.randn(n_patches, patch_dim, device=dev, dtype=dtype)
        eos = cfg_json.get("eos_token_id", 151645)
        eos = eos[0] if isinstance(eos, list) else eos
        V = config.vocab_size if hasattr(config, "vocab_size") else cfg_json["vocab_size"]
        out = {"config": item["label"], "dtype": dtype_name, "attn": attn}

        def rows(g):
            return dict(
                input_ids=ids.repeat(g, 1),
                attention_mask=torch.ones(g, P, dtype=torch.long, device=dev),
                pixel_values=pv.repeat(g, 1),
                image_grid_thw=grid.repeat(g, 1),
            )

        # prefill (one warm-up for kernel selection / compilation)
        def prefill():
            kw = rows(1)
            kw["use_cache"] = True
            if keep:
                kw[keep] = 1
            sync()
            t = time.perf_counter()
            with torch.no_grad():
                o = model(**kw)
            sync()
            del o
            return time.perf_counter() - t

        prefill()
        out["prefillTokS"] = P / prefill()
        log(f"{item['label']} {dtype_name} {attn}: prefill {out['prefillTokS']:.1f} tok/s")

        def generate(m, g, new_tokens):
            clock = Clock()
            with torch.no_grad():
                seqs = m.generate(
                    **rows(g),
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    eos_token_id=eos,
                    pad_token_id=0,
                    stopping_criteria=StoppingCriteriaList([clock]),
                )
            return seqs[:, P:], clock.times

        out["decodeTokS"] = {}
        for g in G_list:
            comp, times = generate(model, g, T_dec)
            steps = len(times) - 1
            out["decodeTokS"][str(g)] = g * steps / (times[-1] - times[0]) if steps > 0 else None
            log(f"  decode G={g}: {out['decodeTokS'][str(g)]} tok/s")

        # G completions of T tokens (random ids) for the teacher-forced passes
        comp = torch.randint(0, V, (G, T), device=dev)

        def seq_logp(m):
            kw = rows(G)
            kw["input_ids"] = torch.cat([kw["input_ids"], comp], dim=1)
            kw["attention_mask"] = torch.ones(G, P + T, dtype=torch.long, device=dev)
            if keep:
                kw[keep] = T + 1
            logits = m(**kw).logits[:, -(T + 1) : -1, :].float()
            return torch.log_softmax(logits, dim=-1).gather(-1, comp.unsqueeze(-1)).squeeze(-1)

        sync()
        t = time.perf_counter()
        with torch.no_grad():
            seq_logp(model)
        sync()
        out["logprobsS"] = time.perf_counter() - t

        # LoRA
        targets = r".*layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
        lcfg = LoraConfig(r=int(spec.get("loraR", 8)), lora_alpha=int(spec.get("loraAlpha", 16)), lora_dropout=0.0, target_modules=targets, bias="none")
        pm = get_peft_model(model, lcfg)
        inner = pm.base_model.model  # the Qwen2VL model with LoRA layers in place
        trainable = [p for p in pm.parameters() if p.requires_grad]
        sync()
        t = time.perf_counter()
        lp = seq_logp(inner)
        lp.sum().backward()
        sync()
        out["loraFwdBwdS"] = time.perf_counter() - t
        for p in trainable:
            p.grad = None
        del lp

        # one GRPO step with our phases
        opt = torch.optim.AdamW(trainable, lr=lr)
        phases = {}
        sync()
        t0 = time.perf_counter()
        gen, _ = generate(inner, G, T)
        comp = gen[:, :T]
        if comp.shape[1] < T:
            comp = torch.nn.functional.pad(comp, (0, T - comp.shape[1]))
        t1 = time.perf_counter()
        phases["generation"] = t1 - t0
        rewards = torch.randn(G, device=dev)
        adv = (rewards - rewards.mean()) / (rewards.std() + 1e-4)
        with torch.no_grad(), pm.disable_adapter():
            ref = seq_logp(inner)
        sync()
        t2 = time.perf_counter()
        phases["logprobs"] = t2 - t1
        logp = seq_logp(inner)
        ratio = torch.exp(logp - logp.detach())
        kl = torch.exp(ref - logp) - (ref - logp) - 1
        loss = -((ratio * adv.unsqueeze(1)) - beta * kl).mean()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        phases["backward"] = t3 - t2
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t4 = time.perf_counter()
        phases["optimizer"] = t4 - t3
        out["grpoStep"] = {"totalS": t4 - t0, "phases": phases}
        log(f"  GRPO step {t4 - t0:.2f} s {phases}")
        if cuda:
            out["peakMemBytes"] = int(torch.cuda.max_memory_allocated())
        del pm, inner, model, opt, trainable, logp, ref, loss
        return out

    configs = {c["label"]: c for c in spec["configs"]}
    runs = []
    for combo in spec["runs"]:
        label, dtype_name, attn = combo["config"], combo["dtype"], combo["attn"]
        if elapsed() > budget:
            runs.append({"config": label, "dtype": dtype_name, "attn": attn, "skipped": f"time budget of {budget:.0f} s spent ({elapsed():.0f} s)"})
            continue
        try:
            runs.append(run_one(configs[label], dtype_name, attn))
        except Exception as e:  # noqa: BLE001 - an OOM or an API mismatch fails this run, not the others
            log(f"{label} {dtype_name} {attn} failed: {type(e).__name__}: {e}")
            runs.append({"config": label, "dtype": dtype_name, "attn": attn, "error": f"{type(e).__name__}: {str(e)[:400]}"})
        if cuda:
            torch.cuda.empty_cache()

    print(
        json.dumps(
            {
                "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
                "device": str(dev),
                "deviceName": device_name,
                "cuda": cuda,
                "matmul": matmul,
                "runs": runs,
                "elapsedS": elapsed(),
            }
        )
    )


if __name__ == "__main__":
    main()
