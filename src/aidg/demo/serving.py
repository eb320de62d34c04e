"""The demo's serving stage: the API on 127.0.0.1 with fresh keys, then the simulated client and the rollout story.

:func:`start_service` brings the API up (the demo does it as soon as the model is trained, so the API answers
while the evaluation and the arena are shown); :func:`drive` then sends the simulated client's traffic, tells the
rollout story and serves until Ctrl-C (or ``seconds``). :func:`serve_demo` is both in one call.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from aidg.config import Settings
from aidg.sim.storage import load_world

STORY_MONITOR = {"time_scale": 120.0, "bucket_seconds": 1.0, "eval_seconds": 0.5, "flush_seconds": 0.5}
STORY_ROLLOUT = {"ramp_interval_hours": 1 / 3, "gate_min_decisions": 150}  # the memo's 48 h: 24 real minutes a step


def story_settings(settings: Settings, tune: dict[str, Any] | None = None) -> tuple[Settings, str, str, str]:
    """The story's versions (the existing system, AIDG's model, a sabotaged copy) and its accelerated settings:
    simulated time ×120 (a 2-hour window is a real minute), a ramp step every 20 simulated minutes, and a decision
    log of its own under ``AIDG_HOME/demo``."""
    from aidg.demo.challengers import register_variant
    from aidg.registry import ModelRegistry

    versions = ModelRegistry(settings).versions()
    good = versions[-1] if settings.service.model_version == "latest" else settings.service.model_version
    current = register_variant(settings, good, "current_system")
    bad = register_variant(settings, good, "sabotaged")
    db = settings.paths.home / "demo" / "decisions.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    for f in db.parent.glob("decisions.sqlite*"):
        f.unlink()
    tune = tune or {}
    s = settings.model_copy(update={
        "database_url": f"sqlite:///{db}",
        "monitor": settings.monitor.model_copy(update={**STORY_MONITOR, **tune.get("monitor", {})}),
        "rollout": settings.rollout.model_copy(update={**STORY_ROLLOUT, **tune.get("rollout", {})}),
        "service": settings.service.model_copy(update={"model_version": current}),
    })  # fmt: skip
    return s, current, good, bad


@dataclass
class DemoService:
    """The API running in this process (a uvicorn thread) and what the client and the story need of it."""

    url: str
    admin: str
    merchants: list[str]
    app: Any
    server: Any
    thread: threading.Thread
    world: Any
    rate: float
    say: Any
    story: tuple[str, str] | None  # (AIDG's version, the sabotaged one) when the story is told
    answers: Any

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_service(
    settings: Settings, data: Path, console: Console | None, port: int = 8000, rate: float = 5.0,
    story: bool = False, story_tune: dict[str, Any] | None = None,
) -> DemoService:  # fmt: skip
    """Serve the API on 127.0.0.1 with fresh API keys (printed); with ``story``, the existing system is the champion
    and AIDG's model and a sabotaged copy are registered for the story (:mod:`aidg.demo.story`)."""
    import uvicorn

    from aidg.config import ApiKey
    from aidg.errors import DataError
    from aidg.online.serving_model import ServingModel
    from aidg.privacy.consent import consent_flags
    from aidg.service import create_app
    from aidg.service.server import port_in_use

    if port_in_use("127.0.0.1", port):
        raise DataError(f"port {port} on 127.0.0.1 is in use: stop what listens there or pass --port")
    world = load_world(data)
    say = console.print if console is not None else (lambda *a, **k: None)
    versions: tuple[str, str] | None = None
    answers = None
    if story:
        from aidg.demo.story import Answers

        settings, current, good, bad = story_settings(settings, story_tune)
        versions, answers = (good, bad), Answers()
        say(f"[bold]Rollout story[/]: champion v{current} is the existing system (each merchant's current deal); "
            f"v{good} is AIDG; v{bad} is AIDG with its GP30 head sign-flipped. Simulated time runs "
            f"{settings.monitor.time_scale:g}× (a 2-hour window: {7200 / settings.monitor.time_scale:g} s).")
    say("[bold]Serving[/]: loading the model and materialising every merchant's online features …")
    app_settings = settings.model_copy(update={"service": settings.service.model_copy(update={"data": data})})
    model = ServingModel(app_settings, data, settings.service.model_version)
    flags = consent_flags(model.merchants)
    merchants = [m for m in map(str, model.ctx.merchant_ids) if flags.personalization.get(m, True)]  # the curl's
    admin, mm = f"admin-{secrets.token_urlsafe(12)}", f"mm-{secrets.token_urlsafe(12)}"
    keys = {admin: ApiKey(role="admin"), mm: ApiKey(role="mm", merchants=(merchants[0],))}
    # the simulated client, the story and the dashboard share the admin key: its limit covers their ~2 × rate
    service = app_settings.service.model_copy(update={"rate_limit_per_second": max(50.0, 4 * rate),
                                                      "rate_limit_burst": max(100, int(8 * rate))})  # fmt: skip
    app = create_app(settings.model_copy(update={"api_keys": keys, "service": service}), model=model)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="aidg-demo-server", daemon=True)
    thread.start()
    for _ in range(600):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    if not server.started:
        raise DataError(f"the service did not start on 127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"
    say(f"API on [cyan]{url}[/] (OpenAPI: [cyan]{url}/docs[/]); keys made for this run:")
    say(f"  admin key  [bold]{admin}[/]\n  MM key     [bold]{mm}[/] (merchant {merchants[0]} only)")
    say(
        f"  try: curl -s -X POST {url}/v1/deals/generate -H 'X-API-Key: {mm}' -H 'content-type: application/json' "
        f'-d \'{{"merchant_id": "{merchants[0]}"}}\''
    )
    say(f"Dashboard: [cyan]{url}/dashboard[/] (paste the admin key).")
    return DemoService(url, admin, merchants, app, server, thread, world, rate, say, versions, answers)


def drive(svc: DemoService, seconds: float | None = None) -> dict[str, Any]:
    """The simulated client's traffic and, when started with one, the rollout story; serves until Ctrl-C (or
    ``seconds``), then stops the API. Returns the client's summary, the service's counters and the story."""
    from aidg.demo.traffic import SimulatedClient

    say = svc.say
    say(f"A simulated client now sends ~{svc.rate:g} requests/s and the world's answers as feedback; Ctrl-C stops it.")
    client = SimulatedClient(svc.url, svc.world, svc.merchants, api_key=svc.admin, rate=svc.rate, seed=0,
                             on_answer=svc.answers)  # fmt: skip
    engine = svc.app.state.engine

    def report(s: dict[str, Any]) -> None:
        w = engine.worker
        say(
            f"  decisions {s['decisions']:,}  feedback {s['feedback_events']:,} (applied {w.applied if w else 0:,})  "
            f"approval {s['approval_rate']:.0%}  override {s['override_rate']:.0%}  "
            f"p50 {s['generate_p50_ms']:.1f} ms  cache hit {engine.cache.stats.hit_rate:.0%}  "
            f"posterior v{engine.posterior_version}  errors {s['errors']}"
        )

    told: dict[str, Any] | None = None
    kwargs = {"seconds": float("inf"), "report": report, "report_every_s": 15.0 if svc.story else 5.0}
    runner = threading.Thread(target=client.run, kwargs=kwargs, name="aidg-demo-client", daemon=True)
    runner.start()
    try:
        if svc.story is not None and svc.answers is not None:
            from aidg.demo.story import tell

            t_story = time.monotonic()
            told = tell(svc.url, svc.admin, svc.answers, svc.story[0], svc.story[1], say)
            told["seconds"] = round(time.monotonic() - t_story, 1)
            if told["error"]:
                say(f"[red]The rollout story stopped after {told['seconds']:.0f} s:[/] {told['error']}")
            say(f"[bold]Story told in {told['seconds']:.0f} s.[/] Timeline:")
            for e in told["timeline"]:
                extra = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("t_s", "event"))
                say(f"  {e['t_s']:>6.1f} s  {e['event']}" + (f"  ({extra})" if extra else ""))
            _story_kpis(told, say)
            say(f"The dashboard stays up at [cyan]{svc.url}/dashboard[/]; Ctrl-C stops the demo.")
        end = time.monotonic() + (seconds if seconds is not None else float("inf"))
        while time.monotonic() < end and runner.is_alive():
            time.sleep(min(0.5, max(end - time.monotonic(), 0.01)))
    except KeyboardInterrupt:
        pass
    finally:
        client.stop()
        runner.join(15)
        svc.stop()
    stats = client.stats
    time.sleep(0.2)
    return {
        "url": svc.url,
        "story": told,
        **stats.summary(),
        "applied": engine.worker.applied if engine.worker else 0,
        "posterior_version": engine.posterior_version,
        "cache_hit_rate": round(engine.cache.stats.hit_rate, 4),
    }


def serve_demo(
    settings: Settings, data: Path, console: Console | None, port: int = 8000, seconds: float | None = None,
    rate: float = 5.0, story: bool = False, story_tune: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Serve the API on 127.0.0.1 with fresh API keys while a simulated client drives generate + feedback traffic.

    With ``story``, first tells the rollout story (:mod:`aidg.demo.story`): the existing system as champion, AIDG's
    model rolled out to full and promoted, then a bad model rolled back by the monitor. Then serves until Ctrl-C
    (or ``seconds``); returns the client's summary, the service's counters and the story.
    """
    return drive(start_service(settings, data, console, port, rate, story, story_tune), seconds)


def _story_kpis(told: dict[str, Any], say: Any) -> None:
    """The 2-hour window's KPIs per arm at the story's end."""
    table = Table(title="KPIs per arm, last 2 simulated hours", show_lines=False)
    for col in ("arm", "decisions", "GP30 proxy (1 = current deal)", "override rate", "conversion", "errors",
                "p95 ms"):  # fmt: skip
        table.add_column(col, justify="right" if col != "arm" else "left")

    def f(v: Any, pct: bool = False) -> str:
        return "–" if v is None else (f"{v:.1%}" if pct else f"{v:.3f}" if isinstance(v, float) else str(v))

    for arm, st in told["windows"].items():
        if st["decisions"] or st["errors"]:
            table.add_row(arm, str(st["decisions"]), f(st["gp30_proxy"]), f(st["override_rate"], True),
                          f(st["conversion"]), str(st["errors"]),
                          "–" if st["latency_p95_ms"] is None else f"≤ {st['latency_p95_ms']:.0f}")  # fmt: skip
    say(table)


__all__ = ["DemoService", "drive", "serve_demo", "start_service", "story_settings"]
