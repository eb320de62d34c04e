"""Rollback drills against a running ``aidg serve``: faulty challengers must be rolled back, healthy ones not.

Each trial starts a rollout of a challenger (a registered copy of the
champion), forces it past the gate into A/B and drives simulated traffic
(two :class:`aidg.demo.traffic.SimulatedClient` threads: generate calls and the
oracle's outcomes as feedback) through the service's worker processes:

* a **faulty** trial is a rollback drill: ``drill_fault_rate`` (default 0.10)
  of the challenger's requests fail. The monitor must roll it back; the
  figure is ``trigger → traffic fully on champion``: from the trigger's
  ``detected_at`` (the transition log) to the last answer a client received
  from a challenger arm (every replica has switched by then);
* a **healthy** trial runs ``--trial-seconds`` with the same challenger and
  no faults; any automatic rollback is a false one.

The A/B shares are raised to 25 % + 25 % for the drill (the memo's 5 % + 10 %
would need ~3× the traffic for the same number of challenger samples); the
triggers and their statistics are the defaults.

    .venv/bin/python bench/rollout.py --json                    # tiny world trained in a temp home
    .venv/bin/python bench/rollout.py --home H --data W --json  # a trained home and its world

``--json`` keys: ``faulty_trials``, ``faulty_rolled_back``, ``healthy_trials``,
``false_rollbacks``, ``restore_seconds_max`` (and ``_median``),
``detect_seconds_median`` and ``_max`` (A/B start → trigger; a faulty trial gets ``--detect-seconds``, the
memo's 5 minutes), ``triggers``, ``requests``,
``request_errors``, ``seconds``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from service_proc import BenchError, log, service  # noqa: E402

DRILL_ENV = {
    "AIDG_ROLLOUT__AB_PERSONALIZATION_SHARE": "0.25",
    "AIDG_ROLLOUT__AB_EXPLORATION_SHARE": "0.25",
    "AIDG_MONITOR__BUCKET_SECONDS": "1",
    "AIDG_MONITOR__EVAL_SECONDS": "0.5",
    "AIDG_MONITOR__FLUSH_SECONDS": "0.5",
    "AIDG_REDIS_URL": None,
    "AIDG_API_KEYS": None,
}


def _tiny_home(root: Path) -> tuple[Path, Path]:
    from aidg import workflows
    from aidg.config import Settings
    from aidg.sim import simulate
    from aidg.sim.storage import save_world

    log("training a tiny world (no --home/--data given; ~3 minutes)")
    world = simulate("tiny", seed=12)
    save_world(world, root / "world")
    workflows.train(Settings(home=root / "home"), root / "world", scale="tiny", seed=0)
    return root / "home", root / "world"


def home_and_data(home: Path | None, data: Path | None, tmp: Path) -> tuple[Path, Path]:
    """``--home`` and ``--data`` as given, or a tiny world trained under ``tmp`` when neither is."""
    if (home is None) != (data is None):
        raise SystemExit("give both --home and --data, or neither")
    return _tiny_home(tmp) if home is None or data is None else (home, data)


def _api(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)


def _state(port: int) -> dict[str, Any]:
    with _api(port) as c:  # a new connection each time: SO_REUSEPORT spreads them over the replicas
        return dict(c.get("/v1/rollout").json())


def _act(port: int, action: str, **body: Any) -> dict[str, Any]:
    with _api(port) as c:
        r = c.post(f"/v1/rollout/{action}", json={"reason": f"bench/rollout.py: {action}", **body})
    if r.status_code != 200:
        raise BenchError(f"{action}: {r.status_code} {r.text[:300]}")
    return dict(r.json())


def _wait_loaded(port: int, workers: int, timeout_s: float = 300.0) -> None:
    """Until ``4 × workers`` fresh connections in a row answer that the challenger is loaded."""
    end, streak = time.monotonic() + timeout_s, 0
    while time.monotonic() < end:
        streak = streak + 1 if _state(port).get("challenger_loaded") else 0
        if streak >= 4 * workers:
            return
        time.sleep(0.1)
    raise BenchError(f"the challenger did not load on every replica within {timeout_s:g} s")


def _trial(port: int, workers: int, challenger: str, fault: float, seconds: float, answers: Any,
           detect_seconds: float = 300.0) -> dict[str, Any]:  # fmt: skip
    st = _state(port)
    if st["state"] in ("shadow", "ab", "ramp", "full"):
        _act(port, "rollback")
    _act(port, "start", challenger=challenger, drill_fault_rate=fault)
    _wait_loaded(port, workers)
    t_ab = time.time()
    _act(port, "advance", force=True)
    end = time.monotonic() + (detect_seconds if fault else seconds)
    while time.monotonic() < end:
        st = _state(port)
        if st["state"] == "rolled_back":
            break
        time.sleep(0.2)
    out: dict[str, Any] = {"fault": fault, "rolled_back": st["state"] == "rolled_back"}
    if out["rolled_back"]:
        t = st["transitions"][0]
        detected = datetime.fromisoformat(t["detail"]["detected_at"]).timestamp()
        time.sleep(3.0)  # keep the traffic on: a replica still serving the challenger would show here
        late = answers.challenger_after(detected)
        out.update(
            triggers=[x["rule"] for x in t["detail"].get("triggers", [])],
            detect_s=round(detected - t_ab, 3),
            restore_s=round(max(late) - detected, 3) if late else 0.0,
            reason=t["reason"],
        )
    else:
        _act(port, "rollback")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, help="AIDG_HOME with a trained version (default: train a tiny world)")
    p.add_argument("--data", type=Path, help="the world the home was trained on")
    p.add_argument("--version", help="the champion (default: the registry's champion alias, else the latest)")
    p.add_argument("--trials", type=int, default=20, help="faulty trials (and as many healthy ones)")
    p.add_argument("--fault-rate", type=float, default=0.10, help="share of the faulty challenger's requests failing")
    p.add_argument("--trial-seconds", type=float, default=15.0, help="how long a healthy trial runs")
    p.add_argument("--detect-seconds", type=float, default=300.0,
                   help="how long a faulty trial may take to be rolled back (the memo's 5 minutes)")
    p.add_argument("--workers", type=int, default=2, help="service worker processes")
    p.add_argument("--rate", type=float, default=30.0, help="requests per second of each of the two clients")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a = p.parse_args()
    from aidg.config import Settings
    from aidg.demo.challengers import register_variant
    from aidg.demo.story import Answers
    from aidg.demo.traffic import SimulatedClient
    from aidg.registry import ModelRegistry
    from aidg.sim.storage import load_world

    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="aidg-bench-rollout-") as tmp:
            home, data = (a.home, a.data) if a.home and a.data else _tiny_home(Path(tmp))
            settings = Settings(home=home)
            registry = ModelRegistry(settings)
            versions = registry.versions()
            champion = a.version or registry.alias("champion") or (versions[-1] if versions else None)
            if champion is None:
                raise BenchError(f"no trained version under {home}: run `aidg train --data DIR` first")
            challenger = register_variant(settings, champion, "copy")
            log(f"champion v{champion}, challenger v{challenger} (a copy)")
            env = {**DRILL_ENV, "AIDG_SERVICE__MODEL_VERSION": champion,
                   "AIDG_DATABASE_URL": f"sqlite:///{Path(tmp) / 'decisions.sqlite'}"}  # fmt: skip
            world = load_world(data)
            answers = Answers()
            with service(home, data, a.workers, env, 600.0) as (port, _):
                merchants = [str(m) for m in world.tables["merchants"].merchant_id]
                clients = [
                    SimulatedClient(f"http://127.0.0.1:{port}", world, merchants, rate=a.rate, seed=i,
                                    conversion_delay_s=1.0, gp30_delay_s=3.0, on_answer=answers)
                    for i in range(2)
                ]
                threads = [threading.Thread(target=c.run, kwargs={"seconds": 36_000}, daemon=True) for c in clients]
                for t in threads:
                    t.start()
                trials = []
                try:
                    for i in range(2 * a.trials):
                        fault = a.fault_rate if i % 2 == 0 else 0.0
                        r = _trial(port, a.workers, challenger, fault, a.trial_seconds, answers, a.detect_seconds)
                        trials.append(r)
                        seen = f"rolled back {r.get('triggers')}, restore {r.get('restore_s')} s"
                        seen = seen if r["rolled_back"] else "kept"
                        log(f"trial {i + 1}/{2 * a.trials}: {'faulty' if fault else 'healthy'} → {seen}")
                finally:
                    for c in clients:
                        c.stop()
                    for t in threads:
                        t.join(15)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    faulty = [t for t in trials if t["fault"]]
    healthy = [t for t in trials if not t["fault"]]
    restore = [t["restore_s"] for t in faulty if t["rolled_back"]]
    detect = [t["detect_s"] for t in faulty if t["rolled_back"]]
    rules: dict[str, int] = {}
    for t in trials:
        for r in t.get("triggers", []):
            rules[r] = rules.get(r, 0) + 1
    out = {
        "faulty_trials": len(faulty),
        "faulty_rolled_back": sum(t["rolled_back"] for t in faulty),
        "healthy_trials": len(healthy),
        "false_rollbacks": sum(t["rolled_back"] for t in healthy),
        "restore_seconds_max": max(restore) if restore else None,
        "restore_seconds_median": statistics.median(restore) if restore else None,
        "detect_seconds_median": statistics.median(detect) if detect else None,
        "detect_seconds_max": max(detect) if detect else None,
        "triggers": rules,
        "fault_rate": a.fault_rate,
        "workers": a.workers,
        "requests": sum(c.stats.decisions for c in clients),
        "request_errors": sum(c.stats.errors for c in clients),
        "seconds": round(time.monotonic() - t0, 1),
    }
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>24}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
