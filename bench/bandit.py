"""Bandit speed: select + update rounds per second, ours (risk_aware_ts) against Vowpal Wabbit, on the same data.

Both run on the arena's requests for a trained version (``AIDG_HOME``) and its
world: each round is one request of a held-out merchant with its 50 scored
variants. A round is the service's work for one decision: choose a variant,
then learn its reward (ours: the four reward parts through the full policy
(guard, exploration share, Thompson sampling, conservative gate); VW: one
``predict`` then one ``learn`` of ``cb_explore_adf`` on the same features,
driven round by round from Python as a service would call it).

Also printed: VW's own file driver (``-d``, no Python per round) on the same
examples, for reference, and the stream path's posterior-update throughput
(``update_batch`` of reward-part events in batches), goal ≥ 20k events/s on
one core, and one decision's latency (``select_action`` alone: p50 and p95, goal p95 ≤ 1 ms). Medians of
``--repeats`` runs.

    AIDG_HOME=... python bench/bandit.py --data W [--rounds 5000] [--repeats 5] [--json]
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

import numpy as np
import torch

from aidg.config import load_settings
from aidg.policy.arena import ArenaData
from aidg.policy.bandit import RiskAwareThompsonSampling
from aidg.policy.baselines import VW, VW_ARGS, ArenaPolicy, RiskAwareTS
from aidg.workflows import arena_data


def _requests(data: ArenaData, rounds: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    m = rng.integers(0, len(data.merchants), rounds)
    return m, rng.random(rounds), rng.random(rounds)


def _rounds_per_s(pol: ArenaPolicy, data: ArenaData, rounds: int, seed: int) -> float:
    """One request after another: choose, then the decision's four reward parts, then close it."""
    m, u, _ = _requests(data, rounds, seed)
    t0 = time.perf_counter()
    for j in range(rounds):
        did = f"b{j}"
        arms = data.arms[m[j]]
        i, _ = pol.select_action(did, arms)
        p = arms.cands.row(i) if i >= 0 else arms.current
        for part, value in (
            ("approval", float(u[j] < p["approval"])),
            ("override", 0.0),
            ("conversion", float(p["conversion"])),
            ("gp30_uplift", float(p["uplift"])),
        ):
            pol.update_params(did, part, value)
        pol.close(did)
    return rounds / (time.perf_counter() - t0)


def _ours(data: ArenaData, seed: int) -> RiskAwareTS:
    """Ours as the arena runs it: warm-started from the merchants' records (before any timing)."""
    pol = RiskAwareTS(data.dim, load_settings(), seed)
    pol.warm_start(data.arms)
    return pol


def ours_rounds_per_s(data: ArenaData, rounds: int, seed: int) -> float:
    return _rounds_per_s(_ours(data, seed), data, rounds, seed)


def decision_ms(data: ArenaData, rounds: int, seed: int) -> np.ndarray:
    """One decision's latency (``select_action`` alone, 50 variants and the current deal) in ms, each round's
    parts then applied untimed; the first fifth (a warming posterior) left out."""
    pol = _ours(data, seed)
    m, u, _ = _requests(data, rounds, seed)
    out = np.zeros(rounds)
    for j in range(rounds):
        arms = data.arms[m[j]]
        t0 = time.perf_counter()
        i, _ = pol.select_action(f"l{j}", arms)
        out[j] = (time.perf_counter() - t0) * 1000
        p = arms.cands.row(i) if i >= 0 else arms.current
        for part, value in (("approval", float(u[j] < p["approval"])), ("gp30_uplift", float(p["uplift"]))):
            pol.update_params(f"l{j}", part, value)
        pol.close(f"l{j}")
    return out[rounds // 5 :]


def vw_rounds_per_s(data: ArenaData, rounds: int, seed: int) -> float:
    pol = VW(load_settings(), seed)  # learns once per decision, at its first part (see aidg.policy.baselines)
    try:
        return _rounds_per_s(pol, data, rounds, seed)
    finally:
        pol.finish()


def vw_file_driver_rounds_per_s(data: ArenaData, rounds: int, seed: int) -> float:
    """The same examples, labelled, written to a file and read by VW's own driver."""
    import vowpalwabbit

    m, u, v = _requests(data, rounds, seed)
    n = data.n_variants
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rounds.dat"
        with path.open("w") as f:
            for j in range(rounds):
                lines = list(data.arms[m[j]].vw_lines)
                i = int(v[j] * n)
                r = float(data.arms[m[j]].cands.score[i]) + (u[j] - 0.5) * 0.2
                lines[i + 1] = f"0:{-r:.5f}:{1 / n:.5f} {lines[i + 1]}"
                f.write("\n".join(lines) + "\n\n")
        t0 = time.perf_counter()
        w = vowpalwabbit.Workspace(f"{VW_ARGS} -d {path}")
        w.run_parser()
        dt = time.perf_counter() - t0
        w.finish()
    return rounds / dt


def stream_events_per_s(data: ArenaData, events: int, batch: int, seed: int) -> float:
    """Posterior updates from a stream of reward-part events, applied ``batch`` at a time."""
    rng = np.random.default_rng(seed)
    ts = RiskAwareThompsonSampling(data.dim, seed=seed)
    decisions = events // 4
    phi = np.concatenate([a.phi for a in data.arms])
    rows = rng.integers(0, len(phi), decisions)
    pred = {"approval": 0.7, "conversion": 0.1, "gp30_uplift": 0.1, "override": 0.02}
    for k in range(decisions):
        ts.register(f"e{k}", phi[rows[k]], 0.5, pred)
    parts = ("approval", "override", "conversion", "gp30_uplift")
    stream = [(f"e{k}", p, float(rng.random())) for p in parts for k in range(decisions)]
    t0 = time.perf_counter()
    for s in range(0, len(stream), batch):
        ts.update_batch(stream[s : s + batch])
    return len(stream) / (time.perf_counter() - t0)


def run(data_dir: Path, rounds: int, repeats: int, batch: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    settings = load_settings()
    data, meta = arena_data(settings, data_dir, days=90, latent_reference=False)
    ours = [ours_rounds_per_s(data, rounds, s) for s in range(repeats)]
    latency = np.concatenate([decision_ms(data, rounds, s) for s in range(repeats)])
    vw = [vw_rounds_per_s(data, rounds, s) for s in range(repeats)]
    driver = [vw_file_driver_rounds_per_s(data, rounds, s) for s in range(repeats)]
    stream = [stream_events_per_s(data, 40_000, batch, s) for s in range(repeats)]
    med = statistics.median
    return {
        "rounds": rounds,
        "repeats": repeats,
        "variants": data.n_variants,
        "context_dim": data.dim,
        "merchants": meta["merchants"],
        "vw_args": VW_ARGS,
        "ours_rounds_per_s": round(med(ours), 1),
        "vw_rounds_per_s": round(med(vw), 1),
        "ratio_ours_over_vw": round(med(ours) / med(vw), 3),
        "decision_ms_p50": round(float(np.percentile(latency, 50)), 3),
        "decision_ms_p95": round(float(np.percentile(latency, 95)), 3),
        "vw_file_driver_rounds_per_s": round(med(driver), 1),
        "stream_update_events_per_s": round(med(stream), 1),
        "stream_batch": batch,
        "all": {"ours": ours, "vw": vw, "vw_file_driver": driver, "stream": stream},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the simulated world the version was trained on")
    p.add_argument("--rounds", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=1000, help="events per posterior update on the stream path")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.rounds < 10 or a.repeats < 1 or a.batch < 1:
        p.error("--rounds must be at least 10, --repeats and --batch at least 1")
    res = run(a.data, a.rounds, a.repeats, a.batch)
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            if k != "all":
                print(f"{k:>30}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
