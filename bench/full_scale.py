"""The memo's scale end to end on this machine: simulate, train, train on 2 processes, evaluate, score every
merchant, serve (issue 21).

Each step runs the CLI a user would run, in its own process, and is timed from outside:

1. ``aidg simulate --scale S`` (``simulate_seconds``);
2. ``aidg train --scale S`` (``train_seconds``; ``train_peak_rss_gb``: the largest resident set of the
   training process, from ``getrusage`` of the waited-for children);
3. ``aidg train --scale D`` on 1 process and on 2 (``--nproc 2``: DistributedDataParallel over gloo) on a world of
   scale ``--ddp-scale`` (small by default: a second and third full training would add hours on 2 cores);
   ``ddp_speedup_2proc`` = one process's seconds ÷ two's;
4. ``aidg evaluate`` (``prototype_type_agreement``, ``reward_spearman`` on the held-out merchants), then
   ``aidg simulate-policy --merchants N`` (the policy arena on a seeded subsample of the held-out merchants,
   ``--arena-merchants``, 1,000 by default of the memo scale's 8,000; ``steps.arena``);
5. ``aidg score-all`` (``batch_candidates_per_s``: every merchant's variants through the request path);
6. ``aidg serve --workers W``: ``serve_cold_start_s`` (start to ``/readyz``), ``serve_rss_mb_per_worker`` (the
   worker processes' mean resident set after the load), ``generate_p99_ms_at_100rps`` (open loop, merchants drawn
   Zipf 1.0 over every merchant, after a warm-up pass at the same rate), ``cache_hit_rate`` (the steady hit rate of
   the embedding cache's policy replayed over the world's merchant count by ``bench/cache_hit.py``; the live
   service's own hit rate over the timed run is ``cache_hit_rate_live``).

    .venv/bin/python bench/full_scale.py --json                        # the memo's scale (hours on 2 cores)
    .venv/bin/python bench/full_scale.py --scale tiny --ddp-scale tiny --json   # a smoke run (minutes)
    .venv/bin/python bench/full_scale.py --workdir W --resume --json   # go on with a run that stopped in W

Each finished step leaves its result in ``WORKDIR/steps``; ``--resume`` keeps those and runs the rest.

``--json`` keys: ``simulate_seconds``, ``train_seconds``, ``train_peak_rss_gb``, ``ddp_speedup_2proc``,
``batch_candidates_per_s``, ``prototype_type_agreement``, ``reward_spearman``, ``serve_cold_start_s``,
``serve_rss_mb_per_worker``, ``cache_hit_rate``, ``generate_p99_ms_at_100rps``, with ``steps`` (each step's
figures) and the settings used.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loadgen  # noqa: E402
from service_proc import BenchError, _group_pids, emit, log, scrape_cache, service  # noqa: E402


def _aidg() -> list[str]:
    exe = Path(sys.executable).with_name("aidg")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "aidg.cli"]


def run_cli(
    args: list[str], home: Path, label: str, keep: Path | None = None
) -> tuple[dict[str, Any], float, float]:
    """``aidg <args> --json`` in a child process: its JSON, its wall seconds and the peak resident set (GB) of the
    children waited for so far (each step's children are its own: the peak is read right after it).

    ``keep``: a folder where each finished step leaves its result (``<label>.json``); a step found there is not run
    again (``--resume``: an hours-long run that stopped at one step restarts from it)."""
    saved = keep / f"{label.replace(' ', '_').replace(',', '')}.json" if keep is not None else None
    if saved is not None and saved.exists():
        kept = json.loads(saved.read_text())
        log(f"{label}: kept from {saved} ({kept['seconds']:.1f} s)")
        return kept["out"], kept["seconds"], kept["peak_gb"]
    env = {**os.environ, "AIDG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    log(f"{label}: aidg {' '.join(args)}")
    t0 = time.perf_counter()
    out = subprocess.run([*_aidg(), *args, "--json"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise BenchError(f"{label} failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}")
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    log(f"{label}: {seconds:.1f} s")
    result = json.loads(out.stdout)
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"out": result, "seconds": seconds, "peak_gb": peak_gb, "args": args}))
    return result, seconds, peak_gb


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _merchants(data: Path) -> list[str]:
    import pandas as pd

    return [str(m) for m in pd.read_parquet(data / "merchants.parquet", columns=["merchant_id"]).merchant_id]


def _cache_replay(merchants: int) -> dict[str, float]:
    spec = importlib.util.spec_from_file_location("cache_hit", HERE / "cache_hit.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(mod.replay(merchants=merchants))


def serve_figures(
    home: Path, data: Path, merchants: list[str], workers: int, rate: float, seconds: float, seed: int
) -> dict[str, Any]:
    """Cold start, memory per worker, generate latency at a fixed rate and the cache's hit rates (module docstring)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(merchants) + 1)
    order = rng.permutation(len(merchants))  # which merchants are popular: not the id order
    n = max(1, round(rate * seconds))
    timing: dict[str, float] = {}
    env: dict[str, str | None] = {"AIDG_API_KEYS": None, "AIDG_REDIS_URL": None}
    with service(home, data, workers, env, 1800.0, timing=timing) as (port, pgid):
        host = "127.0.0.1"

        def batch() -> list[bytes]:
            picks = order[rng.choice(len(merchants), size=n, p=p / p.sum())]
            return [loadgen.post_json_request(host, port, "/v1/deals/generate", {"merchant_id": merchants[i]})
                    for i in picks]  # fmt: skip

        log(f"serve: warm-up, {n} generates at {rate:g} req/s")
        warm = batch()
        loadgen.run(loadgen.open_loop(host, port, warm, rate, seconds))
        before = scrape_cache(port, pgid, workers, warm[0])  # (a generate keeps a found worker busy)
        log(f"serve: timed, {n} generates at {rate:g} req/s")
        res = loadgen.run(loadgen.open_loop(host, port, batch(), rate, seconds)).summary()
        after = scrape_cache(port, pgid, workers, warm[0])
        rss = sorted((_rss_mb(pid) for pid in _group_pids(pgid)), reverse=True)
    hits = after.get("service_cache_hits", 0) - before.get("service_cache_hits", 0)
    misses = after.get("service_cache_misses", 0) - before.get("service_cache_misses", 0)
    worker_rss = rss[:workers] if workers > 1 else rss[:1]
    return {
        "serve_cold_start_s": round(timing["ready_s"], 2),
        "serve_rss_mb_per_worker": round(float(np.mean(worker_rss)), 1),
        "serve_rss_mb_all_processes": round(float(sum(rss)), 1),
        "generate_p99_ms_at_100rps": res["p99_ms"],
        "generate_at_rate": res,
        "cache_hit_rate_live": round(hits / (hits + misses), 4) if hits + misses else None,
        "workers": workers,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="full", choices=["tiny", "small", "full"], help="the world simulated and trained")
    p.add_argument("--ddp-scale", default="small", choices=["tiny", "small", "full"],
                   help="the world trained on 1 and on 2 processes for ddp_speedup_2proc")  # fmt: skip
    p.add_argument("--seed", type=int, default=2100, help="the world's seed (an unseen world: not a test's)")
    p.add_argument("--workers", type=int, default=2, help="service worker processes")
    p.add_argument("--rate", type=float, default=100.0, help="generate requests per second for the latency figure")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the warm-up and of the timed run")
    p.add_argument("--workdir", type=Path, help="where the worlds and homes go (default: a temporary folder)")
    p.add_argument("--skip-ddp", action="store_true", help="leave ddp_speedup_2proc out")
    p.add_argument("--arena-merchants", type=int, default=1000,
                   help="held-out merchants the policy arena replays (a seeded subsample; 0: no arena)")
    p.add_argument("--arena-rounds", type=int, default=50_000, help="decisions per policy in the arena")
    p.add_argument("--resume", action="store_true",
                   help="with --workdir: steps that finished there before are not run again (their figures are kept)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a = p.parse_args(argv)
    if a.resume and a.workdir is None:
        p.error("--resume needs --workdir (the folder of the run to go on with)")
    with tempfile.TemporaryDirectory(prefix="aidg-full-scale-") as tmp:
        root = a.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        try:
            report = run(a, root)
        except BenchError as exc:
            log(f"error: {exc}")
            return 1
    emit(report, a.json)
    return 0


def run(a: argparse.Namespace, root: Path) -> dict[str, Any]:
    world, home = root / f"world-{a.scale}", root / "home"
    keep = root / "steps"  # each finished step's result (--resume goes on from them)
    if not a.resume:
        for old in keep.glob("*.json"):  # a fresh run: what an earlier run left there is not its result
            old.unlink()
    steps: dict[str, Any] = {}
    sim, steps["simulate_seconds"], _ = run_cli(
        ["simulate", "--out", str(world), "--scale", a.scale, "--seed", str(a.seed)], home, "simulate", keep
    )
    steps["world"] = {k: sim[k] for k in sim if isinstance(sim[k], int | float | str)}
    train, seconds, peak = run_cli(["train", "--data", str(world), "--scale", a.scale], home, "train", keep)
    steps["train"] = {"seconds": round(seconds, 1), "peak_rss_gb": round(peak, 2), "stages": train["stage_seconds"]}
    speedup = None
    if not a.skip_ddp:
        dworld = world if a.ddp_scale == a.scale else root / f"world-{a.ddp_scale}"
        if dworld != world:
            sim_args = ["simulate", "--out", str(dworld), "--scale", a.ddp_scale, "--seed", str(a.seed)]
            run_cli(sim_args, home, "ddp world", keep)
        _, one, _ = run_cli(["train", "--data", str(dworld), "--scale", a.ddp_scale], root / "ddp1", "train, 1 process",
                            keep)  # fmt: skip
        _, two, _ = run_cli(["train", "--data", str(dworld), "--scale", a.ddp_scale, "--nproc", "2"], root / "ddp2",
                            "train, 2 processes", keep)  # fmt: skip
        speedup = one / two
        steps["ddp"] = {"scale": a.ddp_scale, "one_process_s": round(one, 1), "two_processes_s": round(two, 1)}
    ev, seconds, _ = run_cli(["evaluate", "--data", str(world)], home, "evaluate", keep)
    steps["evaluate_seconds"] = round(seconds, 1)
    if a.arena_merchants > 0:
        arena, seconds, _ = run_cli(["simulate-policy", "--data", str(world), "--merchants", str(a.arena_merchants),
                                     "--rounds", str(a.arena_rounds)], home, "arena", keep)  # fmt: skip
        steps["arena"] = {"seconds": round(seconds, 1), "merchants": arena.get("merchants"),
                          "heldout_merchants": arena.get("heldout_merchants"), "rounds": arena.get("rounds"),
                          "policies": {k: {m: v.get(m) for m in ("oracle_gain_share", "gp30_uplift_vs_current",
                                                                  "safety_violation_rate", "override_rate")}
                                       for k, v in arena.get("policies", {}).items()}}  # fmt: skip
    batch, _, _ = run_cli(["score-all", "--data", str(world), "--out", str(root / "variants.parquet")], home,
                          "score-all", keep)  # fmt: skip
    steps["score_all"] = batch
    merchants = _merchants(world)
    serve = serve_figures(home, world, merchants, a.workers, a.rate, a.seconds, a.seed)
    steps["serve"] = serve
    replay = _cache_replay(len(merchants))
    return {
        "scale": a.scale,
        "seed": a.seed,
        "simulate_seconds": round(steps["simulate_seconds"], 1),
        "train_seconds": steps["train"]["seconds"],
        "train_peak_rss_gb": steps["train"]["peak_rss_gb"],
        "ddp_speedup_2proc": None if speedup is None else round(speedup, 3),
        "batch_candidates_per_s": batch.get("candidates_per_s"),
        "prototype_type_agreement": ev.get("prototype_type_agreement"),
        "reward_spearman": ev.get("reward_spearman"),
        "serve_cold_start_s": serve["serve_cold_start_s"],
        "serve_rss_mb_per_worker": serve["serve_rss_mb_per_worker"],
        "cache_hit_rate": round(replay["refresh_ahead_hit_rate_steady"], 4),
        "generate_p99_ms_at_100rps": serve["generate_p99_ms_at_100rps"],
        "cache_replay": replay,
        "steps": steps,
        "cpu_count": os.cpu_count(),
    }


if __name__ == "__main__":
    raise SystemExit(main())
