"""Training benchmark: GraphSAGE epoch at full scale against plain PyG, and the small pipeline's stages.

    .venv/bin/python bench/train.py [--json] [--epochs 5] [--skip-pipeline] [--device cpu|cuda]

Peer: a plain PyG full-batch 3-layer ``SAGEConv`` stack (hidden 256) on the same
graph, in the same process, with the same loss. Figures are medians over the
timed epochs (one warm-up epoch is not counted).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _epoch_times(step: Any, epochs: int, sync: Any) -> list[float]:
    step()  # warm-up
    sync()
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    return times


def graph_bench(epochs: int, device: str, seed: int = 7) -> dict[str, Any]:
    from torch_geometric.nn import SAGEConv

    from aidg.features.context import FeatureContext
    from aidg.features.graph import build_graph
    from aidg.features.panel import cutoff_seconds
    from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
    from aidg.sim import graph_size, simulate

    t = time.perf_counter()
    world = simulate("full", seed=seed)
    sim_s = time.perf_counter() - t
    t = time.perf_counter()
    ctx = FeatureContext.from_tables(world.tables, world.as_of)
    g = build_graph(ctx, cutoff_seconds(world.as_of))
    build_s = time.perf_counter() - t
    size = graph_size(world.tables)
    dev = torch.device(device)
    xm, xd = g.x_merchant.to(dev), g.x_deal.to(dev)
    ei, ea, ew = g.edge_index.to(dev), g.edge_attr.to(dev), g.edge_weight.to(dev)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    ours = MerchantGraphSAGE(GraphConfig(merchant_in=xm.shape[1], deal_in=xd.shape[1])).to(dev)
    opt = torch.optim.AdamW(ours.parameters(), lr=1e-3)

    def step_ours() -> None:
        h = ours(xm, xd, ei, ea, ew)
        loss = h.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    # the peer: plain SAGEConv ×3, hidden 256, on the same nodes (features zero-padded to one width)
    width = max(xm.shape[1], xd.shape[1])
    x = torch.cat([nn.functional.pad(xm, (0, width - xm.shape[1])), nn.functional.pad(xd, (0, width - xd.shape[1]))])
    convs = nn.ModuleList([SAGEConv(width, 256), SAGEConv(256, 256), SAGEConv(256, 256)]).to(dev)
    opt_b = torch.optim.AdamW(convs.parameters(), lr=1e-3)

    def step_base() -> None:
        h = x
        for i, conv in enumerate(convs):
            h = conv(h, ei)
            if i < 2:
                h = torch.relu(h)
        loss = h.pow(2).mean()
        opt_b.zero_grad()
        loss.backward()
        opt_b.step()

    ours_t = _epoch_times(step_ours, epochs, sync)
    base_t = _epoch_times(step_base, epochs, sync)
    ours_m, base_m = statistics.median(ours_t), statistics.median(base_t)
    return {
        "device": device,
        "graph_nodes": size.nodes,
        "graph_edges": size.edges,
        "directed_edges": int(ei.shape[1]),
        "simulate_seconds": round(sim_s, 2),
        "graph_build_seconds": round(build_s, 2),
        "graphsage_epoch_seconds": round(ours_m, 4),
        "pyg_sageconv_epoch_seconds": round(base_m, 4),
        "graphsage_vs_pyg_ratio": round(ours_m / base_m, 3),
        "epochs_timed": epochs,
    }


def pipeline_bench(seed: int = 2025) -> dict[str, Any]:
    from aidg import workflows
    from aidg.config import Settings
    from aidg.sim import simulate
    from aidg.sim.storage import save_world

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_world(simulate("small", seed=seed), Path(tmp) / "world")
        sim_s = time.perf_counter() - t0
        settings = Settings(home=Path(tmp) / "home")
        report = workflows.train(settings, Path(tmp) / "world", scale="small", seed=0)
        t = time.perf_counter()
        ev = workflows.evaluate(settings, Path(tmp) / "world")
        eval_s = time.perf_counter() - t
        total = time.perf_counter() - t0
    return {
        "simulate_seconds": round(sim_s, 2),
        "train_seconds": report["seconds"],
        "train_stage_seconds": report["stage_seconds"],
        "evaluate_seconds": round(eval_s, 2),
        "pipeline_seconds": round(total, 2),
        "evaluation": ev,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--epochs", type=int, default=5, help="timed GraphSAGE epochs per model")
    ap.add_argument("--skip-pipeline", action="store_true", help="only the full-scale GraphSAGE comparison")
    ap.add_argument("--skip-graph", action="store_true", help="only the small pipeline")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 16)))
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if not args.skip_graph:
        out["graph"] = graph_bench(args.epochs, args.device)
    if not args.skip_pipeline:
        out["pipeline"] = pipeline_bench()
    if args.json:
        print(json.dumps(out))
    else:
        g = out.get("graph")
        if g:
            print(f"full-scale graph: {g['graph_nodes']:,} nodes, {g['graph_edges']:,} edges ({g['device']})")
            print(f"  GraphSAGE (edge features) epoch: {g['graphsage_epoch_seconds']:.3f} s (median)")
            print(f"  plain PyG SAGEConv×3 epoch:      {g['pyg_sageconv_epoch_seconds']:.3f} s (median)")
            print(f"  ratio ours / PyG:                {g['graphsage_vs_pyg_ratio']:.2f}")
        p = out.get("pipeline")
        if p:
            print(
                f"small pipeline: {p['pipeline_seconds']:.1f} s (simulate {p['simulate_seconds']} s, "
                f"train {p['train_seconds']} s, evaluate {p['evaluate_seconds']} s)"
            )
            print("  train stages: " + ", ".join(f"{k} {v}" for k, v in p["train_stage_seconds"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
