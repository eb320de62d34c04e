"""The fault suite at full size (``make faults``): API fuzzing, stream durability, Redis killed under load.

* ``bench/fuzz.py``: schemathesis, every check, stateful links, ``--cases`` (1,000) per operation;
* ``bench/stream_durability.py``: 100,000 feedback events through Redis Streams (a private redis-server,
  AOF ``appendfsync always``) while the stream worker is ``kill -9``-ed ≥ 50 times and Redis restarted
  once, with one worker and with two in one consumer group;
* ``bench/outage.py``: Redis stopped for 30 s under steady load, then started again empty; then the same with
  PostgreSQL holding the decision log (a private cluster), started again with its data.

``--json`` keys (the issue's): ``schemathesis_failures``, ``schemathesis_5xx``, ``events_produced``,
``events_applied``, ``events_double_counted``, ``worker_kills``, ``redis_outage_non5xx_ratio``,
``redis_outage_degraded_ratio``, ``redis_recovery_s``, ``feedback_lost``; the stream figures are summed over
the one- and two-worker runs (each run's own figures are under ``stream``); the PostgreSQL drill's figures are
``pg_outage_non5xx_ratio``, ``pg_outage_degraded_ratio``, ``pg_recovery_s`` and ``pg_feedback_lost``
(``feedback_lost`` counts both drills); plus each part's details.

    .venv/bin/python bench/faults.py --json                     # tiny world trained in a temp home (~3 min)
    .venv/bin/python bench/faults.py --home H --data W --json   # a trained home and its world
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path)
    p.add_argument("--data", type=Path)
    p.add_argument("--cases", type=int, default=1000, help="fuzz cases per operation")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--outage", type=float, default=30.0)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    import fuzz
    import outage
    import stream_durability
    from service_proc import log

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aidg-faults-") as tmp:
        from rollout import home_and_data

        home, data = home_and_data(a.home, a.data, Path(tmp))
        log(f"fuzzing: {a.cases} cases per operation")
        fz = fuzz.fuzz(fuzz.fuzz_settings(home, data, Path(tmp) / "fuzz"), a.cases, seed=0)
        streams = {}
        for workers in (1, 2):
            log(f"stream durability: {a.events:,} events, {a.kills} kills, {workers} worker(s)")
            streams[f"workers_{workers}"] = stream_durability.run(a.events, a.kills, workers, True, seed=workers)
        log(f"Redis outage: {a.outage:g} s under load")
        out = outage.run(home, data, backend="redis", outage_s=a.outage)
        log(f"PostgreSQL outage: {a.outage:g} s under load")
        pg = outage.run(home, data, backend="postgresql", outage_s=a.outage)
    s = list(streams.values())
    report: dict[str, Any] = {
        "schemathesis_failures": fz["schemathesis_failures"],
        "schemathesis_5xx": fz["schemathesis_5xx"],
        "schemathesis_cases": fz["cases"],
        "events_produced": sum(r["events_produced"] for r in s),
        "events_applied": sum(r["events_applied"] for r in s),
        "events_double_counted": sum(r["events_double_counted"] for r in s),
        "worker_kills": min(r["worker_kills"] for r in s),
        "redis_outage_non5xx_ratio": out["outage_non5xx_ratio"],
        "redis_outage_degraded_ratio": out["outage_degraded_ratio"],
        "redis_recovery_s": out["recovery_s"],
        "feedback_lost": out["feedback_lost"] + pg["feedback_lost"],
        "pg_outage_non5xx_ratio": pg["outage_non5xx_ratio"],
        "pg_outage_degraded_ratio": pg["outage_degraded_ratio"],
        "pg_recovery_s": pg["recovery_s"],
        "pg_feedback_lost": pg["feedback_lost"],
        "stream": streams,
        "redis_outage": out,
        "pg_outage": pg,
        "fuzz": {k: v for k, v in fz.items() if k != "failures"} | {"failures": fz.get("failures", [])[:5]},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if a.json:
        print(json.dumps(report, default=str))
    else:
        for k, v in report.items():
            if not isinstance(v, dict):
                print(f"{k:30} {v}")


if __name__ == "__main__":
    main()
