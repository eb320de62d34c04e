"""Benchmark: scoring 50 candidates for one merchant, with the top-5 attention explanation.

One call = the ContextualDealScorer's forward pass over one merchant's 50
candidates plus the top-5 readable features of every variant from the
attention map (``torch.topk`` over the readable tokens), results on the host.
The model is the production configuration (see ``ScorerConfig``) with random
weights and inputs: the work per call is the same as a trained model's.

CPU: 1 thread, 1,000 timed calls after 50 warm-up calls; p50/p95/p99.
GPU (``--device cuda``): the same eager call in fp32, the same call replayed as
a CUDA graph, and batched throughput (merchants × 50 candidates per call, bf16
autocast) in candidates per second.

    python bench/scorer.py [--calls 1000] [--device cpu|cuda] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch

from aidg.features.merchant_view import DEAL_NAMES, MERCHANT_NAMES
from aidg.models.deal_scorer import ContextualDealScorer
from aidg.models.scorer_config import MerchantTensors, ScorerConfig

N_CANDIDATES = 50
TOP = 5


def build(device: str, batch: int = 1, seed: int = 0) -> tuple[ContextualDealScorer, tuple[torch.Tensor, ...]]:
    torch.manual_seed(seed)
    cfg = ScorerConfig(list(MERCHANT_NAMES), list(DEAL_NAMES), n_categories=20)
    model = ContextualDealScorer(cfg).eval().to(device)
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, cfg.memory_len, dtype=torch.bool)
    m = MerchantTensors(
        torch.randn(batch, len(cfg.merchant_names), generator=g),
        torch.randint(0, 20, (batch,), generator=g),
        torch.randn(batch, cfg.profile_dim, generator=g),
        torch.randn(batch, cfg.intent_dim, generator=g),
        torch.randn(batch, cfg.memory_len, cfg.memory_features, generator=g),
        mask,
    )
    deal = torch.randn(batch, N_CANDIDATES, len(cfg.deal_names), generator=g)
    dcat = torch.randint(0, 20, (batch, N_CANDIDATES), generator=g)
    return model, tuple(t.to(device) for t in (*m, deal, dcat))


def readable_index(model: ContextualDealScorer, device: str) -> torch.Tensor:
    names = model.config.token_names
    return torch.tensor([i for i, n in enumerate(names) if not n.startswith("profile[")], device=device)


def call(
    model: ContextualDealScorer, args: tuple[torch.Tensor, ...], readable: torch.Tensor
) -> dict[str, torch.Tensor]:
    out = model(*args)
    top = torch.topk(out["attention"].index_select(-1, readable), TOP, dim=-1)
    return {"score": out["score"], "risk": out["risk"], "top_w": top.values, "top_i": top.indices}


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 4) for q in (50, 95, 99)} | {
        "mean_ms": round(float(a.mean()), 4)
    }


@torch.inference_mode()
def bench_cpu(calls: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    model, args = build("cpu")
    readable = readable_index(model, "cpu")
    for _ in range(50):
        call(model, args, readable)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        out = call(model, args, readable)
        _ = out["score"].numpy(), out["top_i"].numpy()
        times.append((time.perf_counter() - t) * 1e3)
    return {"device": "cpu", "threads": 1, "calls": calls, "parameters": model.n_parameters(), **percentiles(times)}


def _packed_graph(
    model: Any, args: tuple[torch.Tensor, ...], sizes: list[int], host: torch.Tensor, readable: torch.Tensor, calls: int
) -> tuple[dict[str, float], dict[str, float]]:
    """As a server would run it: the request's inputs packed in one pinned host buffer (one copy in), the
    answer packed in one device buffer (one copy out), everything between replayed as one CUDA graph."""
    dev_in = torch.empty_like(host, device="cuda")
    host_out = torch.empty(N_CANDIDATES * (2 + 2 * TOP), pin_memory=True)

    def packed() -> torch.Tensor:
        parts = list(torch.split(dev_in, sizes))
        shaped = [p.view(a.shape).to(a.dtype) for p, a in zip(parts, args, strict=True)]
        o = call(model, tuple(shaped), readable)
        return torch.cat([o[k].flatten().float() for k in ("score", "risk", "top_w", "top_i")])

    dev_in.copy_(host)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            packed()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        packed_out = packed()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times, gpu_times = [], []
    for _ in range(calls):
        t = time.perf_counter()
        dev_in.copy_(host, non_blocking=True)
        start.record()
        graph.replay()
        end.record()
        host_out.copy_(packed_out, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        times.append((time.perf_counter() - t) * 1e3)
        gpu_times.append(start.elapsed_time(end))
    return percentiles(times), percentiles(gpu_times)


@torch.inference_mode()
def bench_cuda(calls: int, autotune: bool = False) -> dict[str, Any]:
    dev = "cuda"
    model, args = build(dev)
    readable = readable_index(model, dev)
    res: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "calls": calls, "parameters": model.n_parameters()}
    for _ in range(50):
        call(model, args, readable)
    torch.cuda.synchronize()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        out = call(model, args, readable)
        _ = out["score"].cpu(), out["top_i"].cpu()
        times.append((time.perf_counter() - t) * 1e3)
    res["eager_fp32"] = percentiles(times)
    # the same call captured once as a CUDA graph and replayed (static input buffers)
    static = tuple(a.clone() for a in args)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            call(model, static, readable)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = call(model, static, readable)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        for dst, src in zip(static, args, strict=True):
            dst.copy_(src, non_blocking=True)
        graph.replay()
        _ = static_out["score"].cpu(), static_out["top_i"].cpu()
        times.append((time.perf_counter() - t) * 1e3)
    res["cuda_graph_fp32"] = percentiles(times)
    # as a server would run it: the request's inputs packed in one pinned host buffer (one copy in),
    # the answer packed in one device buffer (one copy out), everything else replayed as one CUDA graph
    sizes = [a[0].numel() for a in args]
    host = torch.cat([a.flatten().float() for a in args]).cpu().pin_memory()
    res["cuda_graph_packed_fp32"], res["cuda_graph_replay_gpu_only"] = _packed_graph(
        model, args, sizes, host, readable, calls
    )
    # the same, with the model compiled by TorchInductor first (fused kernels), then captured
    try:
        compiled = torch.compile(model, dynamic=False)
        res["compiled_cuda_graph_packed_fp32"], res["compiled_cuda_graph_replay_gpu_only"] = _packed_graph(
            compiled, args, sizes, host, readable, calls
        )
    except Exception as exc:  # compilation is optional: report why it did not run
        res["compiled_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    # autotuned kernels (Triton templates for the small matmuls, fused epilogues) with TF32 matmuls
    if autotune:
        try:
            torch.set_float32_matmul_precision("high")
            tuned = torch.compile(model, dynamic=False, mode="max-autotune-no-cudagraphs")
            res["autotuned_cuda_graph_packed_tf32"], res["autotuned_cuda_graph_replay_gpu_only"] = _packed_graph(
                tuned, args, sizes, host, readable, calls
            )
        except Exception as exc:
            res["autotuned_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        finally:
            torch.set_float32_matmul_precision("highest")
    # batched throughput: many merchants per call, bf16 autocast
    batched: dict[str, float] = {}
    for b in (1024, 4096, 16384):
        model_b, args_b = build(dev, batch=b)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(5):
                call(model_b, args_b, readable)
            torch.cuda.synchronize()
            reps = 20
            t = time.perf_counter()
            for _ in range(reps):
                call(model_b, args_b, readable)
            torch.cuda.synchronize()
        batched[str(b)] = round(b * N_CANDIDATES * reps / (time.perf_counter() - t), 1)
    res["batched_bf16_candidates_per_s"] = batched
    res["batched_bf16_best_candidates_per_s"] = max(batched.values())
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--autotune", action="store_true", help="cuda: also TorchInductor max-autotune (minutes)")
    a = p.parse_args(argv)
    if a.calls < 1:
        p.error("--calls must be at least 1")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here")
    res = bench_cuda(a.calls, a.autotune) if a.device == "cuda" else bench_cpu(a.calls)
    res["goal_p95_ms"] = 3.0 if a.device == "cpu" else 0.2
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>36}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
