"""Benchmark: the service's cold start, process start to the first ``/readyz`` 200 (issue 18: goal ≤ 10 s, small world).

Starts ``aidg serve`` (embedded backends, ``--workers`` processes) on a trained home and data folder ``--runs``
times and reports each start and the median. The first start may compute and cache what a version does not carry
(a snapshot for a data folder it was not trained on); later ones read the cache. ``--compile`` measures with the
TorchInductor-compiled scorer (compiled at start, cached by Inductor afterwards); the default serves eagerly.

    python bench/cold_start.py --home H --data DIR [--runs 3] [--workers 1] [--compile] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from service_proc import BenchError, emit, log, service  # noqa: E402


def cold_starts(home: Path, data: Path, runs: int, workers: int, compile_: bool) -> dict[str, Any]:
    """``runs`` starts of ``aidg serve`` on ``home`` / ``data``: each start's seconds to ready, and their median."""
    if not (home.is_dir() and data.is_dir()):
        raise BenchError(f"--home {home} and --data {data} must be a trained home and its data folder")
    starts = []
    for i in range(runs):
        timing: dict[str, float] = {}
        args = ["--compile" if compile_ else "--no-compile"]
        with service(home, data, workers, {"AIDG_API_KEYS": None}, 600.0, timing=timing, extra_args=args):
            pass
        starts.append(round(timing["ready_s"], 2))
        log(f"start {i + 1}/{runs}: ready after {starts[-1]} s")
    return {"cold_start_s": starts, "cold_start_median_s": statistics.median(starts),
            "first_start_s": starts[0], "workers": workers, "compile": compile_}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, required=True, help="AIDG_HOME holding the trained version")
    p.add_argument("--data", type=Path, required=True, help="the data folder served")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="compile the scorer at start (TorchInductor)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.runs < 1 or a.workers < 1:
        p.error("--runs and --workers must be positive")
    try:
        report = cold_starts(a.home, a.data, a.runs, a.workers, a.compile)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    emit(report, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
