"""Each fault protection removed in turn: the test that guards it must then fail (a mutation check).

For every entry of ``PROTECTIONS`` this copies ``src/``, ``tests/``, ``bench/`` and ``pyproject.toml`` to a
temp folder, replaces the protection's line(s) there (the working tree is never touched), runs the tests
named for it against the copy (``PYTHONPATH`` puts the copy's ``src`` first) and records whether they
failed. ``caught`` must be true for every entry; a mutation whose text is no longer in the source is
reported ``stale`` (the code moved: update the entry). The trained tiny world the tests share is trained
once, in a temp folder, through ``AIDG_TEST_TRAINED``.

    .venv/bin/python bench/protections.py            # all (~20 min)
    .venv/bin/python bench/protections.py --only spill --only outbox --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Protection:
    name: str
    file: str  # relative to the repository root
    old: str  # the protection, exactly as in the source (must occur once)
    new: str  # what replaces it: the protection removed
    tests: tuple[str, ...]  # pytest node ids that must fail without it


SAFE = "tests/service/test_safe_answer.py"
STREAM = "tests/faults/test_stream_durability.py"
BAD = "tests/faults/test_bad_model.py"
PROTECTIONS = (
    Protection("nan_score_check", "src/aidg/service/serving.py",
               'if not np.isfinite(s["score"][: n + 1]).all():', "if False:",
               (f"{SAFE}::test_a_failing_model_answers_the_current_deal_degraded[nan]",)),
    Protection("safe_answer_on_model_failure", "src/aidg/service/engine.py",
               "except Exception as exc:  # the model failed on this request", "except ZeroDivisionError as exc:  #",
               (f"{SAFE}::test_a_failing_model_answers_the_current_deal_degraded[exception]",)),
    Protection("no_exploration_while_degraded", "src/aidg/service/serving.py",
               "explore = explore and not degraded", "explore = explore",
               (f"{SAFE}::test_no_exploration_while_a_backend_is_down",)),
    Protection("snapshot_fallback", "src/aidg/service/serving.py",
               "except BackendUnavailableError as exc:\n            degraded.append(f\"cache or online store",
               "except ZeroDivisionError as exc:\n            degraded.append(f\"cache or online store",
               (f"{SAFE}::test_no_exploration_while_a_backend_is_down",
                "tests/faults/test_outage.py::test_a_backend_killed_under_load_degrades_loses_nothing_and_recovers"
                "[redis]")),
    Protection("safe_answer_when_the_decision_log_is_down", "src/aidg/service/engine.py",
               "except BackendUnavailableError as exc:  # a decision that is not logged",
               "except ZeroDivisionError as exc:  #",
               (f"{SAFE}::test_with_the_decision_log_down_generate_is_safe_and_feedback_is_spilled_then_replayed",)),
    Protection("feedback_spill", "src/aidg/service/intake.py",
               "except BackendUnavailableError:\n            self.spill.append(events)",
               "except ZeroDivisionError:\n            self.spill.append(events)",
               (f"{SAFE}::test_with_the_decision_log_down_generate_is_safe_and_feedback_is_spilled_then_replayed",
                "tests/faults/test_outage.py::test_a_backend_killed_under_load_degrades_loses_nothing_and_recovers"
                "[postgresql]")),
    Protection("spill_replay", "src/aidg/service/engine.py",
               "                self.replay_spill()\n", "                pass\n",
               (f"{SAFE}::test_with_the_decision_log_down_generate_is_safe_and_feedback_is_spilled_then_replayed",)),
    Protection("redis_bounded_retries", "src/aidg/store/online_redis.py",
               "socket_timeout=timeout_s, retry=retry_policy()", "socket_timeout=timeout_s",
               ("tests/contract/test_online.py::test_a_flapping_redis_gets_two_retries_with_short_backoff_then_fails",)),
    Protection("redis_breaker", "src/aidg/store/online_redis.py",
               "why = self._breaker.check()", "why = None",
               ("tests/contract/test_online.py::test_after_a_redis_failure_calls_fail_at_once_for_a_second_then_try"
                "_again",)),
    Protection("rebuild_lost_online_rows", "src/aidg/online/serving_model.py",
               "row = self.feature_row(mid)\n                lost[name] = row.to_bytes()", "continue",
               ("tests/faults/test_outage.py::test_a_backend_killed_under_load_degrades_loses_nothing_and_recovers"
                "[redis]",)),
    Protection("outbox_republish", "src/aidg/online/worker.py",
               "if events:\n            self.bus.publish(self.settings.stream, [reward_message(e) for e in events])",
               "if False:\n            self.bus.publish(self.settings.stream, [reward_message(e) for e in events])",
               (f"{STREAM}::test_a_redis_that_lost_everything_is_refilled_by_the_outbox",)),
    Protection("ack_after_commit", "src/aidg/online/worker.py",
               "        changed = self.apply(keys) if keys else []\n"
               "        self.bus.ack(s.stream, s.group, [m.id for m in msgs])",
               "        self.bus.ack(s.stream, s.group, [m.id for m in msgs])\n"
               "        changed = self.apply(keys) if keys else []",
               (f"{STREAM}::test_acking_only_after_the_commit_is_what_keeps_a_killed_batch[none]",)),
    Protection("reclaim_dead_consumers_entries", "src/aidg/stream/redis_bus.py",
               "for _ in range(_MAX_CLAIM_SCANS):", "for _ in range(0):",
               (f"{STREAM}::test_acking_only_after_the_commit_is_what_keeps_a_killed_batch[none]",)),
    Protection("claim_once", "src/aidg/decisionlog/tx.py",
               "where = (tuple_(EVENTS.c.decision_id, EVENTS.c.event_id).in_(chunk), EVENTS.c.applied_at.is_(None))",
               "where = (tuple_(EVENTS.c.decision_id, EVENTS.c.event_id).in_(chunk),)",
               (f"{STREAM}::test_idempotent_claims_are_what_keeps_redeliveries_from_counting_twice[none]",)),
    Protection("refuse_non_finite_weights", "src/aidg/inference/persistence.py",
               "if any(not torch.isfinite(p).all() for p in module.parameters()):", "if False:",
               (f"{BAD}::test_corrupt_or_nan_weights_are_refused_at_start_and_the_champion_keeps_serving[nan]",)),
    Protection("verify_version_at_start", "src/aidg/service/routes/rollout.py",
               "        engine.verify_version(body.challenger)", "        pass",
               (f"{BAD}::test_corrupt_or_nan_weights_are_refused_at_start_and_the_champion_keeps_serving[truncated]",)),
    Protection("refuse_non_finite_scores_at_load", "src/aidg/online/serving_model.py",
               "if bad:  # finite weights can still overflow", "if False:  #",
               (f"{BAD}::test_a_version_whose_scores_overflow_is_rolled_back_when_it_fails_to_load",)),
    Protection("roll_back_a_challenger_that_failed_to_load", "src/aidg/service/engine.py",
               "                    self._refuse_challenger(version, exc)", "                    pass",
               (f"{BAD}::test_a_version_whose_scores_overflow_is_rolled_back_when_it_fails_to_load",)),
)  # fmt: skip


def _copy(dst: Path) -> None:
    for name in ("src", "tests", "bench"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def check(p: Protection, trained: Path, timeout_s: float) -> dict[str, Any]:
    """Remove ``p`` in a copy of the tree and run its tests there; ``caught`` when they fail."""
    source = (ROOT / p.file).read_text()
    found = source.count(p.old)
    line = source[: source.find(p.old)].count("\n") + 1 if found else None
    out: dict[str, Any] = {"name": p.name, "where": f"{p.file}:{line}", "removed": p.old.strip(), "tests": p.tests}
    if found != 1:
        return {**out, "status": "stale", "caught": False, "why": f"the text occurs {found} times in {p.file}"}
    with tempfile.TemporaryDirectory(prefix="aidg-protections-") as tmp:
        root = Path(tmp)
        _copy(root)
        (root / p.file).write_text(source.replace(p.old, p.new))
        env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}", "AIDG_TEST_TRAINED": str(trained)}
        t0 = time.perf_counter()
        junit = root / "junit.xml"
        try:
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                f"--junitxml={junit}", *p.tests],
                               cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s)  # fmt: skip
            tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
            counts = _junit_counts(junit)
        except subprocess.TimeoutExpired:
            tail, counts = [f"timed out after {timeout_s:g} s"], {}
    # only a test that ran and failed proves the protection matters: an error in collection or set-up, a skip
    # or a time-out proves nothing
    caught = counts.get("failures", 0) > 0 and counts.get("errors", 0) == 0
    status = "failed" if caught else ("passed" if counts and not counts.get("failures") and not counts.get("errors")
                                      and not counts.get("skipped") else "inconclusive")  # fmt: skip
    return {**out, "status": status, "caught": caught, "counts": counts,
            "seconds": round(time.perf_counter() - t0, 1), "tail": tail}  # fmt: skip


def _junit_counts(path: Path) -> dict[str, int]:
    """``{"tests", "failures", "errors", "skipped"}`` summed over the JUnit report's test suites."""
    import xml.etree.ElementTree as ET

    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", default=[], help="a protection's name (repeatable)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per protection's tests")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    names = {x.name for x in PROTECTIONS}
    unknown = sorted(set(a.only) - names)
    if unknown:
        p.error(f"unknown protection(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    chosen = [x for x in PROTECTIONS if not a.only or x.name in a.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="aidg-protections-trained-") as trained:
        for i, x in enumerate(chosen, 1):
            print(f"[protections] {i}/{len(chosen)} {x.name}: removed in {x.file}", file=sys.stderr, flush=True)
            r = check(x, Path(trained), a.timeout)
            print(f"[protections]   {r['status']} {r['counts']} → {'caught' if r['caught'] else 'NOT CAUGHT'} "
                  f"({r.get('seconds', 0):.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
            if not r["caught"]:
                print("\n".join(f"[protections]     {t}" for t in r.get("tail", [])), file=sys.stderr, flush=True)
            results.append(r)
    report = {"protections": len(results), "caught": sum(r["caught"] for r in results), "results": results}
    if a.json:
        print(json.dumps(report))
    else:
        for r in results:
            print(f"{'caught' if r['caught'] else 'NOT CAUGHT':10} {r['name']:44} {r['where']}")
        print(f"{report['caught']}/{report['protections']} protections caught by their tests")
    return 0 if report["caught"] == report["protections"] else 1


if __name__ == "__main__":
    sys.exit(main())
