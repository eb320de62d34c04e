"""``aidg demo``: the guided tour. Grows with each stage (train → serve → roll out → dashboard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from aidg.config import Settings
from aidg.demo.plots import best_discount_histogram, response_curves
from aidg.sim.storage import load_world


def _terms(row: pd.Series) -> str:
    return f"{row.discount_pct:.0%} off {row.price:,.2f}, {int(row.duration_days)} d, {row.category_id}"


def run_demo(out: Path, report: dict[str, Any], console: Console | None) -> dict[str, Any]:
    """Show one merchant per personality: habitual, current-system and oracle-best deals, and plots."""
    from aidg.sim import Oracle, RelativeGrid

    world = load_world(report["out"])
    oracle = Oracle(world)
    truth = world.truth["merchants"]
    at = world.as_of
    # one typical merchant per personality (median of its best-over-habitual gain)
    picks = truth.groupby("personality", sort=True).head(40).merchant_id.to_numpy()
    ids = pd.Series(picks)
    best = oracle.best_deal(ids, at)
    current = oracle.current_system_deal(ids, at)
    e_best, e_cur = (oracle.evaluate(ids, t, at) for t in (best, current))
    frame = pd.DataFrame(
        {
            "merchant_id": ids,
            "personality": truth.set_index("merchant_id").personality.loc[ids].to_numpy(),
            "gain": e_best.expected_gp30 / e_cur.expected_gp30,
        }
    )
    # per personality, the merchant whose best-vs-current gain is the median
    ranked = frame.assign(rank=frame.groupby("personality").gain.rank(method="first"))
    size = frame.groupby("personality").gain.transform("size")
    chosen = ranked.index[ranked["rank"] == size // 2 + 1].to_numpy()
    rows = []
    for i in chosen:
        rows.append(
            {
                "merchant_id": ids[i],
                "personality": frame.personality[i],
                "current_system": _terms(current.iloc[i]),
                "current_gp30": round(float(e_cur.expected_gp30[i]), 1),
                "oracle_best": _terms(best.iloc[i]),
                "best_gp30": round(float(e_best.expected_gp30[i]), 1),
                "best_uplift": round(float(e_best.expected_uplift[i]), 3),
            }
        )
    # plots: GP30 against discount for those merchants, and the spread of best discounts
    grid = RelativeGrid.default()
    curves = {}
    for i in chosen:
        r = oracle.rows([ids[i]])
        b = best.iloc[i]
        size = b.price / float(world.tables["merchants"].set_index("merchant_id").list_price[ids[i]])
        sel = (np.isclose(grid.size, round(size * 4) / 4) | np.isclose(grid.size, size)) & (
            grid.duration == b.duration_days
        )
        focus = 0 if b.category_id == world.tables["merchants"].set_index("merchant_id").category_id[ids[i]] else 1
        sel &= grid.focus == focus
        if not sel.any():
            continue
        sub = type(grid)(grid.discount[sel], grid.size[sel], grid.duration[sel], grid.focus[sel])
        gp = oracle.grid_gp30(r, sub, at)[0]
        curves[f"{frame.personality[i]} ({ids[i]})"] = (sub.discount, gp, float(b.discount_pct))
    curve_png = response_curves(
        curves, out / "response_curves.png", "True expected GP30 by discount: each merchant peaks elsewhere"
    )
    hist_png = best_discount_histogram(
        {float(k): v for k, v in report["best_discount_counts"].items()}, out / "best_discounts.png"
    )
    summary = {**report, "examples": rows, "plots": [str(curve_png), str(hist_png)]}
    if console is not None:
        _print(console, summary)
    return summary


def _print(console: Console, s: dict[str, Any]) -> None:
    console.rule("[bold]AIDG demo: a simulated local-deals marketplace")
    console.print(
        f"World (small, seed {s['seed']}, as of {s['as_of']}) written to [cyan]{s['out']}[/] in {s['seconds']} s"
    )
    console.print("  " + ", ".join(f"{k} {v:,}" for k, v in s["rows"].items()))
    console.print(
        f"  merchant–deal graph: {s['graph_nodes']:,} nodes ({s['graph_merchant_nodes']:,} merchants + "
        f"{s['graph_deal_nodes']:,} deal configurations), {s['graph_edges']:,} edges (deals that ran)"
    )
    console.print()
    console.print("[bold]Does personalization matter here?[/] (ground truth from the simulator's oracle)")
    g = s["global_best_terms"]
    console.print(
        f"  The best one-size-fits-all deal is {g['discount_pct']:.0%} off, {g['price_x_list']:g}× list price, "
        f"{g['duration_days']:g} days: mean expected GP30 {s['mean_global_best_gp30']:,.0f}."
    )
    console.print(
        f"  Each merchant's own best deal: mean {s['mean_best_gp30']:,.0f}, "
        f"[bold green]{s['personalization_gain']:+.0%}[/]; best discounts fall in "
        f"{s['distinct_best_discount_buckets']} different 5-point buckets."
    )
    t = Table(title="One typical merchant per personality (hidden type, shown for the tour)")
    for col in ("merchant", "type", "current system proposes", "GP30", "oracle-best deal", "GP30", "uplift vs habit"):
        t.add_column(col, justify="right" if col in ("GP30", "uplift vs habit") else "left")
    for r in s["examples"]:
        t.add_row(
            r["merchant_id"],
            r["personality"],
            r["current_system"],
            f"{r['current_gp30']:,.0f}",
            r["oracle_best"],
            f"{r['best_gp30']:,.0f}",
            f"{r['best_uplift']:+.0%}",
        )
    console.print(t)
    console.print("Plots: " + ", ".join(f"[cyan]{p}[/]" for p in s["plots"]))
    console.print(
        "Next: `aidg validate "
        + s["out"]
        + "` checks the data; `aidg explain --merchant ID --data "
        + s["out"]
        + "` proposes and explains one merchant's deals once trained; `aidg simulate-policy --data "
        + s["out"]
        + "` runs the full policy arena; `aidg serve` serves the API and the dashboard at /dashboard (the demo ends "
        "with a rollout story, then serves both)."
    )


ARENA_COLUMNS = (
    ("cumulative_reward", "cumulative reward", "{:,.0f}"),
    ("oracle_gain_share", "share of the oracle's gain", "{:.1%}"),
    ("gp30_uplift_vs_current", "GP30 vs current", "{:+.1%}"),
    ("acceptance_uplift_vs_legacy", "approval vs legacy", "{:+.1%}"),
    ("override_rate", "override rate", "{:.3f}"),
    ("safety_violation_rate", "safety violations", "{:.4f}"),
    ("regret_vs_oracle", "regret vs oracle", "{:,.0f}"),
    ("conservative_violation_runs", "conservative violations (runs)", "{:.2f}"),
    ("rounds_per_second", "rounds/s", "{:,.0f}"),
)


def show_arena(report: dict[str, Any], console: Console, plot: Path | None = None) -> Path | None:
    """The arena as a table (one row per policy) and, when asked, the cumulative-reward plot."""
    from aidg.demo.plots import arena_curves

    t = Table(
        title=(
            f"Policy arena: {report['rounds']:,} decisions over {report['days']} simulated days × {report['seeds']} "
            f"seed(s), {report['merchants']} held-out merchants, judged by the simulator's truth"
        )
    )
    t.add_column("policy")
    for _, label, _ in ARENA_COLUMNS:
        t.add_column(label, justify="right")
    for name, r in report["policies"].items():
        style = "bold green" if name == "risk_aware_ts" else None
        t.add_row(name, *(fmt.format(r[k]) if k in r else "–" for k, _, fmt in ARENA_COLUMNS), style=style)
    console.print(t)
    first: dict[str, Any] = next(iter(report["policies"].values()), {})
    if "oracle_cumulative_reward" in first:
        console.print(
            f"oracle (each request's truly best deal): cumulative reward {first['oracle_cumulative_reward']:,.0f}; "
            "latent_informed is a reference that reads the simulator's hidden traits, not a contender"
        )
    post = report.get("posterior") or {}
    if "interval_coverage_90" in post:
        console.print(
            f"risk_aware_ts's 90 % GP30 intervals (from each merchant's record, before the first decision) hold the "
            f"true expected GP30 of {post['interval_coverage_90']:.1%} of the held-out merchants' deals"
        )
    ours = report["policies"].get("risk_aware_ts", {})
    if ours.get("why_current"):
        console.print(
            "risk_aware_ts played the current system's deal because: "
            + "; ".join(f"{why} ({n:,}×)" for why, n in ours["why_current"].items())
        )
    if plot is None or not report.get("curves"):
        return None
    path = arena_curves(report["curves"], plot)
    console.print(f"plot: {path}")
    return path


def show_models(training: dict[str, Any], evaluation: dict[str, Any], console: Console) -> None:
    """The trained version's held-out figures as the demo prints them."""
    console.rule("[bold]Merchant profiles: trained on 80 % of merchants, judged on the other 20 %")
    console.print(
        f"Model aidg-merchant-profile version {training['version']} trained in {training['seconds']} s "
        "(" + ", ".join(f"{k} {v} s" for k, v in training["stage_seconds"].items() if k != "total") + ")"
    )
    e = evaluation
    rows = [
        (
            "personality probe accuracy (512-d profile → hidden type)",
            e.get("personality_probe_accuracy"),
            f"chance {e.get('personality_chance', float('nan')):.2f}",
        ),
        ("sentiment accuracy on phrasings never seen in training", e.get("sentiment_accuracy"), ""),
        (
            "next override type, macro F1",
            e.get("override_type_macro_f1"),
            f"majority {e.get('override_majority_macro_f1', float('nan')):.2f}",
        ),
        ("city embeddings vs hidden regions, silhouette", e.get("geo_region_silhouette"), "> 0.1 is structure"),
        (
            "deal scorer: Spearman of score vs true expected reward",
            e.get("reward_spearman"),
            f"gradient-boosted baseline {nested(e, 'scorer_vs_baseline', 'gbm', 'reward_spearman'):.3f}",
        ),
        (
            "deal scorer: NDCG@5 of each merchant's 50 variants",
            e.get("ndcg_at_5"),
            f"baseline {nested(e, 'scorer_vs_baseline', 'gbm', 'ndcg_at_5'):.3f}",
        ),
        ("approval probability, calibration error (ECE)", e.get("approval_ece"), "goal ≤ 0.05"),
        (
            "IF-THEN rules agree with the scorer",
            e.get("surrogate_fidelity"),
            f"{e.get('surrogate_leaves')} leaves; majority answer {nested(e, 'surrogate_majority_fidelity'):.2f}",
        ),
        ("attribution faithfulness (top-5 vs random 5)", e.get("attribution_faithfulness_ratio"), "goal ≥ 2"),
        ("similar merchants of the same hidden type", e.get("prototype_type_agreement"), "chance ≈ 0.25"),
    ]
    t = Table(title="Held-out evaluation against the simulator's ground truth")
    for col in ("what", "value", "compare with"):
        t.add_column(col, justify="right" if col == "value" else "left")
    for what, v, ref in rows:
        t.add_row(what, "n/a" if v is None else f"{v:.3f}", ref)
    console.print(t)


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


def serve_demo(
    settings: Settings, data: Path, console: Console | None, port: int = 8000, seconds: float | None = None,
    rate: float = 5.0, story: bool = False, story_tune: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Serve the API on 127.0.0.1 with fresh API keys while a simulated client drives generate + feedback traffic.

    With ``story``, first tells the rollout story (:mod:`aidg.demo.story`): the existing system as champion, AIDG's
    model rolled out to full and promoted, then a bad model rolled back by the monitor. Then serves until Ctrl-C
    (or ``seconds``); returns the client's summary, the service's counters and the story.
    """
    import secrets
    import threading
    import time

    import uvicorn

    from aidg.config import ApiKey
    from aidg.demo.traffic import SimulatedClient
    from aidg.errors import DataError
    from aidg.online.serving_model import ServingModel
    from aidg.privacy.consent import consent_flags
    from aidg.service import create_app
    from aidg.service.server import port_in_use

    if port_in_use("127.0.0.1", port):
        raise DataError(f"port {port} on 127.0.0.1 is in use: stop what listens there or pass --port")
    world = load_world(data)
    say = console.print if console is not None else (lambda *a, **k: None)
    told: dict[str, Any] | None = None
    if story:
        from aidg.demo.story import Answers, tell

        settings, current, good, bad = story_settings(settings, story_tune)
        answers: Answers | None = Answers()
        say(f"[bold]Rollout story[/]: champion v{current} is the existing system (each merchant's current deal); "
            f"v{good} is AIDG; v{bad} is AIDG with its GP30 head sign-flipped. Simulated time runs "
            f"{settings.monitor.time_scale:g}× (a 2-hour window: {7200 / settings.monitor.time_scale:g} s).")
    else:
        answers = None
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
    say(f"A simulated client now sends ~{rate:g} requests/s and the world's answers as feedback; Ctrl-C stops it.")
    client = SimulatedClient(url, world, merchants, api_key=admin, rate=rate, seed=0, on_answer=answers)
    engine = app.state.engine

    def report(s: dict[str, Any]) -> None:
        w = engine.worker
        say(
            f"  decisions {s['decisions']:,}  feedback {s['feedback_events']:,} (applied {w.applied if w else 0:,})  "
            f"approval {s['approval_rate']:.0%}  override {s['override_rate']:.0%}  "
            f"p50 {s['generate_p50_ms']:.1f} ms  cache hit {engine.cache.stats.hit_rate:.0%}  "
            f"posterior v{engine.posterior_version}  errors {s['errors']}"
        )

    kwargs = {"seconds": float("inf"), "report": report, "report_every_s": 15.0 if story else 5.0}
    runner = threading.Thread(target=client.run, kwargs=kwargs, name="aidg-demo-client", daemon=True)
    runner.start()
    try:
        if story and answers is not None:
            t_story = time.monotonic()
            told = tell(url, admin, answers, good, bad, say)
            told["seconds"] = round(time.monotonic() - t_story, 1)
            if told["error"]:
                say(f"[red]The rollout story stopped after {told['seconds']:.0f} s:[/] {told['error']}")
            say(f"[bold]Story told in {told['seconds']:.0f} s.[/] Timeline:")
            for e in told["timeline"]:
                extra = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("t_s", "event"))
                say(f"  {e['t_s']:>6.1f} s  {e['event']}" + (f"  ({extra})" if extra else ""))
            _story_kpis(told, say)
            say(f"The dashboard stays up at [cyan]{url}/dashboard[/]; Ctrl-C stops the demo.")
        end = time.monotonic() + (seconds if seconds is not None else float("inf"))
        while time.monotonic() < end and runner.is_alive():
            time.sleep(min(0.5, max(end - time.monotonic(), 0.01)))
    except KeyboardInterrupt:
        pass
    finally:
        client.stop()
        runner.join(15)
        server.should_exit = True
        thread.join(10)
    stats = client.stats
    time.sleep(0.2)
    return {
        "url": url,
        "story": told,
        **stats.summary(),
        "applied": engine.worker.applied if engine.worker else 0,
        "posterior_version": engine.posterior_version,
        "cache_hit_rate": round(engine.cache.stats.hit_rate, 4),
    }


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


def nested(d: dict[str, Any], *keys: str) -> float:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return float("nan")
        d = d[k]
    return float(d)  # type: ignore[arg-type]
