"""Schemathesis against the service's own OpenAPI schema: every check, every phase, stateful links.

The app is built in process (``aidg.service.create_app``) on a private decision
log and a private copy of the data folder, with an admin API key (declared in
the app's OpenAPI as the ``ApiKey`` scheme, so ``ignored_auth`` checks that a
missing or wrong key is refused) and the rate limit raised out of the way (the
fuzzer is not there to measure 429s). Schemathesis's own engine (what
``schemathesis run`` does) drives it through its ASGI interface: the examples,
coverage and fuzzing phases per operation (positive and negative data,
``max-examples`` each), then the stateful phase along the schema's OpenAPI
links (generate → explanation, feedback, profile, consent; consent PUT → GET).
Real merchant ids are drawn half the time (a schemathesis dictionary), so
requests get past the 404 into the model. Generation is derandomized from
``--seed``: a run is reproducible.

What counts:

* ``schemathesis_failures``: unique failures of any check over every phase
  (schemathesis deduplicates one found again by the same check and cause);
  every check is on. One narrow exception (``EXCEPTIONS``): two operations
  where a schema-valid request is rightly 422 for a rule OpenAPI cannot state;
* ``schemathesis_5xx``: responses with a status of 500 or more (every one, not
  deduplicated), 503 included: no backend is down here. An exception out of the
  app is a 500, as a server makes it (``Served``);
* ``failures``: the first few, each with its operation, status, check, message
  and a ``curl`` that reproduces it; ``failure_kinds`` names them all.

Expected 4xx (404 for an unknown id, 409 for a rollout action the state does
not allow, 400, 413, 422, 429 …) are declared in the routes' ``responses=``, so
status code conformance passes honestly.

``DELETE /v1/merchants/{id}`` is fuzzed, but only ever with ids that are not
merchants of the served data: a ``filter_path_parameters`` hook rejects real
ones before they are sent, and ``Served`` refuses any that gets through (418:
the run fails). Erasure would remove the merchant from the registered model's
files, which a shared home (the tests' session model) must keep.

    .venv/bin/python bench/fuzz.py --cases 1000 --json                     # tiny world trained in a temp home
    .venv/bin/python bench/fuzz.py --home H --data W --cases 100 --json     # a trained home and its world

``--json`` keys: ``schemathesis_failures``, ``schemathesis_5xx``,
``operations``, ``cases``, ``max_examples``, ``min_cases_per_operation`` (the
fewest any operation with inputs got), ``single_request_operations`` (no
parameter, body or key: one request is all there is, plus the unexpected
methods), ``cases_per_operation``, ``phases``, ``status_counts`` (and
``_by_operation``), ``failure_kinds``, ``failures``, ``errors`` (operations
schemathesis could not test), ``app_exceptions``, ``erasures_refused``,
``seconds``. The exit status is 1 when there is any failure, 5xx or error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ADMIN_KEY = "fuzz-admin-key"
SHOWN_FAILURES = 5


def log(msg: str) -> None:
    print(f"[bench/fuzz] {msg}", file=sys.stderr, flush=True)


def fuzz_settings(home: Path, data: Path, tmp: Path, **service: Any) -> Any:
    """Settings of the fuzzed app: the trained ``home``, a private copy of ``data`` and a private decision log,
    one admin key, the rate limit out of the way."""
    from aidg.config import Settings

    world = tmp / "world"
    if not world.exists():
        shutil.copytree(data, world)
    return Settings(
        home=home,
        service={"data": world, "rate_limit_per_second": 1e6, "rate_limit_burst": 1_000_000, **service},
        database_url=f"sqlite:///{tmp / 'decisions.sqlite'}",
        api_keys={ADMIN_KEY: {"role": "admin"}},
    )


# Schema-valid requests the service still answers 422, on purpose, because OpenAPI cannot state the rule:
# * POST /v1/rollout/{action}: the body's required fields depend on the path's action (``start`` needs
#   ``challenger``), and one operation over a templated path has one body schema;
# * GET /v1/decisions/{id}/explanation: the what-if's query parameters go together (all three or none) and
#   ``value``'s type depends on ``term`` (a number, or a category id): OpenAPI has no dependencies between parameters.
# Only there does positive_data_acceptance also take 422; everywhere else a schema-valid request refused is a failure.
POSITIVE_ACCEPTED = ["2xx", "3xx", 401, 403, 404, 409, 429, "5xx"]
EXCEPTIONS = [
    {
        "include-path": path,
        "include-method": method,
        "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE_ACCEPTED, 422]}},
    }
    for method, path in (("POST", "/v1/rollout/{action}"), ("GET", "/v1/decisions/{decision_id}/explanation"))
]


class Served:
    """The fuzzed app as a server runs it, plus a guard.

    * An exception out of the app is what uvicorn makes of it: a 500 if no response had started (Starlette's
      error middleware re-raises after sending its own 500; either way the client sees a 500, never a dropped
      request), counted in ``exceptions``;
    * ``DELETE /v1/merchants/{id}`` of a real merchant never reaches the app (it would erase the merchant from the
      registered model's files). The fuzzer should never send one (its ``filter_path_parameters`` hook); if it
      does, the guard answers 418, an undocumented status, so the run fails, and counts it in ``refused``.
    """

    PREFIX = "/v1/merchants/"

    def __init__(self, app: Any, known: set[str]) -> None:
        self.app, self.known = app, known
        self.refused = self.exceptions = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from aidg.service.responses import JSON

        path = str(scope.get("path", ""))
        erasing = scope["type"] == "http" and scope["method"] == "DELETE" and path.startswith(self.PREFIX)
        if erasing and path[len(self.PREFIX) :] in self.known:
            self.refused += 1
            msg = "bench/fuzz.py refused to erase a real merchant"
            await JSON({"error": "fuzz_guard", "message": msg, "detail": None}, status_code=418)(scope, receive, send)
            return
        started = False

        async def sending(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if scope["type"] != "http":
                raise
            self.exceptions += 1
            if not started:
                await JSON({"error": "internal", "message": "unexpected error", "detail": None}, status_code=500)(
                    scope, receive, send
                )


def _config(cases: int, seed: int, merchants: list[str], versions: list[str], key: str | None) -> Any:
    import schemathesis

    raw: dict[str, Any] = {
        "seed": seed,
        "continue-on-failure": True,
        "workers": 1,
        "generation": {"mode": "all", "max-examples": cases, "deterministic": True, "database": "none"},
        "checks": {"enabled": True},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True},
        },
        "suppress-health-check": ["all"],
        "operations": EXCEPTIONS,
    }
    if key is not None:  # the scheme the app's OpenAPI declares when it has keys
        raw["auth"] = {"openapi": {"ApiKey": {"api_key": key}}}
    # real merchant ids (and registered versions) some of the time, so requests get past the 404 into the model
    # (and the links start), and rollouts start
    raw["dictionaries"], raw["parameters"] = {}, {}
    if merchants:
        raw["dictionaries"]["merchants"] = {"values": merchants}
        binding = {"dictionary": "merchants", "probability": 0.5}
        raw["parameters"].update({"merchant_id": binding, "body.merchant_id": binding})
    if versions:
        raw["dictionaries"]["versions"] = {"values": versions}
        raw["parameters"]["body.challenger"] = {"dictionary": "versions", "probability": 0.5}
    return schemathesis.Config.from_dict(raw)


def _failure_row(label: str, check: str, failure: Any, curl: str, response: Any) -> dict[str, Any]:
    return {
        "operation": label,
        "status": None if response is None else response.status_code,
        "check": check,
        "title": failure.title,
        "message": str(failure.message)[:500],
        "curl": curl,
        "body": None if response is None else response.text[:300],
    }


def fuzz(
    app_or_settings: Any, cases_per_operation: int, seed: int = 0, *, key: str | None = ADMIN_KEY
) -> dict[str, Any]:
    """Run schemathesis's engine against the app (a FastAPI app, or the ``Settings`` to build one) and count
    (module docstring). ``key``: the ``X-API-Key`` of the ``ApiKey`` scheme the app's OpenAPI declares when it
    has keys (None for an app without). The app's lifespan runs for the fuzz and is shut down after it."""
    import schemathesis
    from schemathesis.engine import events
    from schemathesis.engine.statistic import Statistic
    from schemathesis.python import asgi

    from aidg.config import Settings
    from aidg.service import create_app

    t0 = time.perf_counter()
    app = create_app(app_or_settings) if isinstance(app_or_settings, Settings) else app_or_settings
    engine_ = getattr(app.state, "engine", None)
    merchants = [str(m) for m in engine_.model.ctx.merchant_ids] if engine_ is not None else []
    versions = list(engine_.monitor.controller.versions() or []) if engine_ is not None else []
    known = set(merchants)
    config = _config(cases_per_operation, seed, merchants, versions, key)
    served = Served(app, known)
    schema = schemathesis.openapi.from_asgi("/openapi.json", served, config=config)

    @schema.hook
    def filter_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> bool:
        # never erase a real merchant: the registered model's files are shared (module docstring)
        op = ctx.operation
        if op is None or op.method.upper() != "DELETE" or not path_parameters:
            return True
        return str(path_parameters.get("merchant_id")) not in known

    stats = Statistic()
    per_op: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    by_op: dict[str, Counter[int]] = {}
    phases: Counter[str] = Counter()
    kinds: dict[tuple[str, str, str], dict[str, Any]] = {}  # (operation, check, title) → its first case
    errors: list[str] = []
    try:
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished):
                rec = event.recorder
                stats.on_scenario_finished(rec)
                for case_id, node in rec.cases.items():
                    label = node.value.operation.label
                    per_op[label] += 1
                    phases[event.phase.value] += 1
                    inter = rec.interactions.get(case_id)
                    response = inter.response if inter is not None else None
                    if response is not None:
                        statuses[response.status_code] += 1
                        by_op.setdefault(label, Counter())[response.status_code] += 1
                    for check in rec.checks.get(case_id, []):
                        info = check.failure_info
                        if info is not None:
                            kinds.setdefault(
                                (label, check.name, info.failure.title),
                                _failure_row(label, check.name, info.failure, info.code_sample, response),
                            )
            elif isinstance(event, events.NonFatalError):
                errors.append(f"{event.label}: {event.info.format()}"[:500])
            elif isinstance(event, events.FatalError):
                raise RuntimeError(f"schemathesis stopped: {event.exception!r}") from event.exception
    finally:
        asgi.shutdown_lifespans()
    # operations with no parameter, body or key: one request is all there is to send (plus the unexpected methods)
    single = sorted(
        f"{m.upper()} {p}"
        for p, item in schema.raw_schema["paths"].items()
        for m, op in item.items()
        if not op.get("parameters") and "requestBody" not in op and not op.get("security")
    )
    varied = [n for op, n in per_op.items() if op not in single]
    return {
        "operations": len(per_op),
        "cases": sum(per_op.values()),
        "max_examples": cases_per_operation,
        "min_cases_per_operation": min(varied, default=0),
        "single_request_operations": single,
        "cases_per_operation": dict(sorted(per_op.items())),
        "phases": dict(phases),
        "schemathesis_failures": stats.total_failures,
        "schemathesis_5xx": sum(c for s, c in statuses.items() if s >= 500),
        "errors": errors,
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "status_counts_by_operation": {op: dict(sorted(c.items())) for op, c in sorted(by_op.items())},
        "failure_kinds": sorted(f"{op} {check}: {title}" for op, check, title in kinds),
        "failures": list(kinds.values())[:SHOWN_FAILURES],
        "erasures_refused": served.refused,
        "app_exceptions": served.exceptions,
        "seconds": round(time.perf_counter() - t0, 1),
    }


@contextmanager
def _tiny_home() -> Iterator[tuple[Path, Path, str]]:
    """A tiny world trained in a temporary home, and a registered copy of its version (a challenger to roll out);
    yields the home, the world and the trained version (the champion)."""
    from aidg import workflows
    from aidg.config import Settings
    from aidg.demo.challengers import register_variant
    from aidg.registry import ModelRegistry
    from aidg.sim import simulate
    from aidg.sim.storage import save_world

    with tempfile.TemporaryDirectory(prefix="aidg-fuzz-") as d:
        root = Path(d)
        log("training a tiny world (no --home/--data given; ~3 minutes)")
        save_world(simulate("tiny", seed=12), root / "world")
        settings = Settings(home=root / "home")
        workflows.train(settings, root / "world", scale="tiny", seed=0)
        champion = ModelRegistry(settings).versions()[-1]
        register_variant(settings, champion, "copy")
        yield root / "home", root / "world", champion


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, help="AIDG_HOME with a trained version (default: train a tiny world)")
    p.add_argument("--data", type=Path, help="the world the home was trained on")
    p.add_argument("--cases", type=int, default=1000, help="examples per operation and generation mode")
    p.add_argument("--seed", type=int, default=0, help="the seed generation is derandomized from")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a = p.parse_args()
    if (a.home is None) != (a.data is None):
        p.error("give both --home and --data, or neither")
    with tempfile.TemporaryDirectory(prefix="aidg-fuzz-run-") as tmp:
        if a.home is not None:
            out = fuzz(fuzz_settings(a.home, a.data, Path(tmp)), a.cases, a.seed)
        else:
            with _tiny_home() as (home, data, champion):
                out = fuzz(fuzz_settings(home, data, Path(tmp), model_version=champion), a.cases, a.seed)
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    clean = out["schemathesis_failures"] == 0 and out["schemathesis_5xx"] == 0 and not out["errors"]
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
