"""The ``aidg`` command line (Typer + Rich). Imported by nothing.

Every report command takes ``--json`` and then prints exactly one JSON object
on stdout; progress and messages go to stderr.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aidg.config import Settings, load_settings
from aidg.errors import AIDGError, DataValidationError
from aidg.policy.peers import POLICIES as POLICY_NAMES

app = typer.Typer(
    name="aidg",
    help="AIDG, the AI Deal Generator: simulate a marketplace, validate data, and (soon) train, serve and roll out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)  # messages stay on one line, greppable
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a report.")]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn AIDG's own errors into a clear message and exit code 2 (never a traceback)."""
    try:
        yield
    except AIDGError as exc:
        _fail(str(exc))


def _settings() -> Settings:
    with _user_errors():
        return load_settings()


def _wide_console() -> Console:
    """stdout console; wide enough for the demo's tables when output is not a terminal."""
    c = Console()
    return c if c.is_terminal else Console(width=140)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


@contextmanager
def _progress(label: str, quiet: bool = False) -> Iterator[Callable[[str, float], None]]:
    """A Rich progress bar on stderr; yields ``update(stage, fraction)``."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task(label, total=1.0)

        def update(stage: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"{label}: {stage}")

        yield update


def _simulate_report(scale: str, seed: int, out: Path, quiet: bool = False) -> dict[str, Any]:
    from aidg.sim import graph_size, personalization, simulate
    from aidg.store import save_world

    t0 = time.perf_counter()
    with _progress(f"simulate {scale}", quiet) as update:
        world = simulate(scale, seed=seed, progress=lambda s, f: update(s, 0.6 * f))
        update("writing tables", 0.65)
        save_world(world, out)
        update("oracle figures", 0.8)
        g = graph_size(world.tables)
        p = personalization(world)
        update("done", 1.0)
    return {
        "out": str(out),
        "scale": scale,
        "seed": seed,
        "as_of": str(world.as_of.date()),
        "rows": {k: len(v) for k, v in world.tables.items()},
        "graph_nodes": g.nodes,
        "graph_edges": g.edges,
        "graph_merchant_nodes": g.merchant_nodes,
        "graph_deal_nodes": g.deal_nodes,
        "distinct_best_discount_buckets": p.distinct_best_discount_buckets,
        "personalization_gain": round(p.gain, 4),
        "best_discount_counts": {f"{k:.2f}": v for k, v in p.best_discount_counts.items()},
        "global_best_terms": p.global_best,
        "mean_best_gp30": round(p.mean_best_gp30, 2),
        "mean_global_best_gp30": round(p.mean_global_gp30, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write <table>.parquet files (and truth/) into.")],
    scale: Annotated[str, typer.Option(help="World size: tiny, small (default) or full (the memo's scale).")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same world.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Simulate a marketplace with ground truth and write its tables."""
    with _user_errors():
        from aidg.sim import get_scale

        get_scale(scale)
        report = _simulate_report(scale, seed, out, quiet=json_out)
    if json_out:
        _emit(report)
        return
    console = Console(soft_wrap=True)
    t = Table(title=f"World {scale} seed {seed} → {out}", show_header=True)
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in report["rows"].items():
        t.add_row(k, f"{v:,}")
    console.print(t)
    console.print(f"merchant–deal graph: {report['graph_nodes']:,} nodes, {report['graph_edges']:,} edges")
    console.print(
        f"personalization gain (oracle): {report['personalization_gain']:+.1%}; "
        f"distinct best-discount buckets: {report['distinct_best_discount_buckets']}"
    )
    console.print(f"took {report['seconds']} s")


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="Folder with <table>.parquet or <table>.csv files.")],
    json_out: JsonOpt = False,
) -> None:
    """Check a data folder against the schema; exit 1 listing every problem (table, row, column)."""
    from aidg.store import OfflineStore

    store = OfflineStore(data)
    with _user_errors():
        try:
            tables, _ = store.load()
            problems: list[Any] = []
        except DataValidationError as exc:
            tables, problems = {}, exc.problems
            more = exc.more
    if not store.tables():
        _fail(f"{data} holds no table files (expected e.g. {data}/merchants.parquet; see docs/data-schema.md)")
    ok = not problems
    if json_out:
        _emit(
            {
                "ok": ok,
                "data": str(data),
                "tables": store.tables(),
                "rows": {k: len(v) for k, v in tables.items()},
                "problems": [
                    {
                        "table": p.table,
                        "row": p.row,
                        "column": p.column,
                        "value": None if p.value is None else str(p.value),
                        "message": p.message,
                    }
                    for p in problems
                ],
                "more_problems": 0 if ok else more,
            }
        )
    elif ok:
        Console(soft_wrap=True).print(
            f"[green]ok[/]: {len(tables)} tables valid in {data}: "
            + ", ".join(f"{k} {len(v):,}" for k, v in tables.items())
        )
    else:
        err.print(f"[bold red]{len(problems) + more} problem(s)[/] in {data}:")
        for p in problems:
            err.print(f"  • {p}", highlight=False)
        if more:
            err.print(f"  … and {more} more")
    if not ok:
        raise typer.Exit(1)


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Data folder (aidg simulate's output or your own tables).")],
    scale: Annotated[str, typer.Option(help="Training budget: tiny, small (default) or full.")] = "small",
    seed: Annotated[int, typer.Option(help="Seed: the same data and seed train the same model.")] = 0,
    sentiment_full: Annotated[
        bool,
        typer.Option("--sentiment-full", help="Fine-tune sentiment with the memo's setting: 100k examples, 3 epochs."),
    ] = False,
    dp: Annotated[
        bool,
        typer.Option(
            "--dp/--no-dp",
            help="Differential privacy, the merchant as the unit: DP-SGD to AIDG_PRIVACY__DP_EPSILON "
            "(docs/privacy.md); the graph branch and the sentiment fine-tune are left out.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train the merchant-profile encoders and register the model as a new version (MLflow)."""
    from aidg import workflows

    s = _settings()
    with _user_errors(), _progress("train", json_out) as update:
        report = workflows.train(s, data, scale=scale, seed=seed, sentiment_full=sentiment_full, progress=update, dp=dp)
    if json_out:
        _emit(report)
        return
    title = f"Trained aidg-merchant-profile version {report['version']} in {report['seconds']} s"
    if report.get("dp_epsilon") is not None:
        title += f" (DP: ε = {report['dp_epsilon']:.3f}, δ = {report['dp_delta']:.2g}, the merchant as the unit)"
    _print_report(title, report["metrics"], report["stage_seconds"])


@app.command("audit-privacy")
def audit_privacy(
    data: Annotated[Path, typer.Option(help="Data folder (aidg simulate's output: its truth measures the utility).")],
    scale: Annotated[str, typer.Option(help="Training budget: tiny or small (default).")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of the split and of both trainings.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Membership-inference audit: train with and without DP, attack both, and compare the scorers' reward Spearman."""
    from aidg.compliance.audit import audit_privacy as run_audit

    s = _settings()
    if scale not in ("tiny", "small"):
        _fail(f"unknown audit scale {scale!r}; choose tiny or small")
    with _user_errors(), _progress("audit-privacy", json_out) as update:
        report = run_audit(s, data, scale=scale, seed=seed, progress=update)
    if json_out:
        _emit(report)
        return
    keys = ("dp_epsilon", "dp_delta", "mia_auc_dp", "mia_auc_nondp", "reward_spearman_dp", "reward_spearman_nondp")
    figures = {k: report[k] for k in (*keys, "dp_utility_cost")}
    figures.update({f"accept: {k}": v for k, v in report["acceptance"].items()})
    _print_report(f"Privacy audit of {report['train_merchants']} training merchants", figures, report["seconds"])


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="The data folder the model was trained on (its held-out merchants).")],
    version: Annotated[str, typer.Option(help="Model version, or 'latest'.")] = "latest",
    json_out: JsonOpt = False,
) -> None:
    """Evaluate a trained model on held-out merchants (against the simulator's truth where there is one)."""
    from aidg import workflows

    s = _settings()
    with _user_errors(), _progress("evaluate", json_out) as update:
        report = workflows.evaluate(s, data, version=version, progress=update)
    if json_out:
        _emit(report)
        return
    ablation = report.pop("ablation", {})
    _print_report(
        f"Evaluation of version {report['version']} on {report['heldout_merchants']} held-out merchants", report, {}
    )
    _print_ablation(ablation)


@app.command("simulate-policy")
def simulate_policy(
    data: Annotated[Path, typer.Option(help="A simulated world (aidg simulate) the model version was trained on.")],
    rounds: Annotated[int, typer.Option(help="Decisions per seed.")] = 50_000,
    days: Annotated[int, typer.Option(help="Simulated days the decisions spread over.")] = 90,
    seed: Annotated[int, typer.Option(help="First seed of the request stream.")] = 0,
    seeds: Annotated[int, typer.Option(help="Number of seeds (request streams) per policy.")] = 1,
    policies: Annotated[
        str | None, typer.Option(help="Comma-separated subset of: " + ", ".join(POLICY_NAMES) + " (default: all).")
    ] = None,
    version: Annotated[str, typer.Option(help="Model version, or 'latest'.")] = "latest",
    json_out: JsonOpt = False,
) -> None:
    """The policy arena: run deal policies through simulated time with delayed rewards, judged by the oracle."""
    from aidg import workflows
    from aidg.demo import show_arena

    s = _settings()
    chosen = tuple(p.strip() for p in policies.split(",") if p.strip()) if policies else None
    with _user_errors(), _progress("arena", json_out) as update:
        report = workflows.simulate_policy(
            s,
            data,
            rounds=rounds,
            days=days,
            seed=seed,
            seeds=seeds,
            policies=chosen,
            version=version,
            progress=update,
        )
    if json_out:
        report.pop("curves", None)
        _emit(report)
        return
    show_arena(report, _wide_console(), s.paths.home / "arena" / "arena.png")


def _print_report(title: str, metrics: dict[str, Any], seconds: dict[str, Any]) -> None:
    console = Console(soft_wrap=True)
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in metrics.items():
        if isinstance(v, int | float):
            t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(t)
    if seconds:
        console.print("seconds per stage: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))


def _print_ablation(ablation: dict[str, dict[str, float]]) -> None:
    if not ablation:
        return
    t = Table(title="Ablation: downstream GP30-uplift error on held-out merchants with one branch removed")
    for col in ("branch removed", "RMSE", "RMSE increase"):
        t.add_column(col, justify="left" if col == "branch removed" else "right")
    for k, r in ablation.items():
        t.add_row(k, f"{r['rmse']:.4f}", f"{r['rmse_increase']:+.4f}")
    Console(soft_wrap=True).print(t)


def _parse_what_if(text: str | None) -> tuple[int, str, Any] | None:
    """``VARIANT:TERM=VALUE`` (e.g. ``3:discount_pct=0.4``) → (3, "discount_pct", "0.4")."""
    if text is None:
        return None
    try:
        head, value = text.split("=", 1)
        variant, term = head.split(":", 1)
        return int(variant), term.strip(), value.strip()
    except ValueError:
        _fail(f"--what-if takes VARIANT:TERM=VALUE, e.g. 3:discount_pct=0.4 (got {text!r})")


@app.command()
def explain(
    merchant: Annotated[str, typer.Option(help="Merchant id to propose and explain deal variants for.")],
    data: Annotated[Path, typer.Option(help="Data folder holding the merchant's tables.")],
    version: Annotated[str, typer.Option(help="Model version, or 'latest'.")] = "latest",
    at: Annotated[str | None, typer.Option(help="Date of the proposal (default: the model's as-of date).")] = None,
    n: Annotated[int | None, typer.Option(help="Number of variants (default: AIDG_BANDIT__N_CANDIDATES, 50).")] = None,
    what_if: Annotated[
        str | None, typer.Option("--what-if", help="Change one term of a variant: VARIANT:TERM=VALUE.")
    ] = None,
    top: Annotated[int, typer.Option(help="Variants shown in the report (JSON has all).")] = 5,
    json_out: JsonOpt = False,
) -> None:
    """Score a merchant's deal variants and say why: attention top-5, attributions, rules, similar merchants."""
    from aidg import workflows

    s = _settings()
    change = _parse_what_if(what_if)
    if n is not None and n < 1:
        _fail(f"--n must be at least 1 (got {n})")
    with _user_errors(), _progress("explain", json_out) as update:
        report = workflows.explain(
            s, data, merchant, version=version, at=at, n_variants=n, change=change, progress=update
        )
    if json_out:
        _emit(report)
        return
    _print_explanation(report, top)


def _print_explanation(report: dict[str, Any], top: int) -> None:
    console = _wide_console()
    console.rule(f"[bold]Deal variants for {report['merchant_id']} ({report['category']}) as of {report['at']}")
    t = Table()
    for col in ("#", "type", "discount", "price", "days", "focus", "score", "GP30 uplift", "approval", "risk"):
        t.add_column(col, justify="left" if col in ("type", "focus") else "right")
    t.add_column("why (attention top-5)")
    for v in report["variants"][:top]:
        c = v["components"]
        why = ", ".join(f["feature"] for f in v["top_features"])
        terms = [str(v["variant"]), v["type"], f"{v['discount_pct']:.0%}", f"{v['price']:.2f}", str(v["duration_days"])]
        scores = [f"{v['score']:.3f}", f"{c['gp30_uplift']:+.1%}", f"{c['approval']:.0%}", f"{v['risk']:.3f}"]
        t.add_row(*terms, v["focus"], *scores, why)
    console.print(t)
    for vid, attrs in report["attributions"].items():
        parts = ", ".join(f"{a['feature']} {a['attribution']:+.3f}" for a in attrs)
        console.print(f"variant {vid}: attributions (Integrated Gradients) {parts}")
        if vid in report["rules"]:
            console.print(f"  rule: {report['rules'][vid]}")
    if report["similar_merchants"]:
        sims = ", ".join(f"{m['merchant_id']} ({m['similarity']:.2f})" for m in report["similar_merchants"])
        console.print(f"similar merchants: {sims}")
    if report.get("what_if"):
        w = report["what_if"]
        console.print(
            f"what-if {w['term']} {w['from']} → {w['to']}: score {w['score']['change']:+.3f} "
            f"[{w['score']['low']:+.3f}, {w['score']['high']:+.3f}], GP30 uplift {w['uplift']['change']:+.3f}, "
            f"risk {w['risk']['change']:+.3f} ({w['level']:.0%} interval)"
        )
    for note in report.get("notes", []):
        console.print(f"note: {note}")


@app.command()
def schema() -> None:
    """Print the data schema as Markdown (the contract every data folder follows; docs/data-schema.md)."""
    from aidg.store import schema_markdown

    sys.stdout.write(schema_markdown())


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serve_env(s: Settings, data: Path | None, version: str) -> Settings:
    """Check what the service needs before any worker starts; pass data and version to the workers by environment."""
    import os

    from aidg.registry import ModelRegistry

    folder = data or s.service.data or s.paths.home / "demo" / "world"
    if not Path(folder).exists():
        _fail(f"no data folder to serve at {folder}: pass --data DIR (aidg simulate's output or your tables)")
    with _user_errors():
        versions = ModelRegistry(s).versions()
    if not versions:
        _fail(f"no trained model under {s.paths.home}: run `aidg train --data {folder}` (or `aidg demo`) first")
    if version != "latest" and version not in versions:
        _fail(f"no model version {version!r}; versions: {', '.join(versions)}")
    os.environ["AIDG_SERVICE__DATA"] = str(Path(folder).resolve())
    os.environ["AIDG_SERVICE__MODEL_VERSION"] = version
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"  # one BLAS thread per worker process, one process per core (FACTS: ×3 p99 otherwise)
    return load_settings()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (without API keys only 127.0.0.1).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (0: one per core).", min=0, max=64)] = 0,
    data: Annotated[Path | None, typer.Option(help="Data folder served (default: the demo world).")] = None,
    version: Annotated[
        str | None,
        typer.Option(help="Model version served when no rollout names a champion (default: AIDG_SERVICE__MODEL_VERSION "
                     "or the latest)."),
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile/--no-compile", help="TorchInductor-compile the scorer (~25 s once, then cached).")
    ] = True,
) -> None:
    """Serve the API (OpenAPI at /docs). Embedded backends unless AIDG_REDIS_URL / AIDG_DATABASE_URL are set."""
    import os

    from aidg.service.server import port_in_use
    from aidg.service.server import serve as run_workers

    s = _settings()
    if not s.api_keys and host not in LOOPBACK:
        _fail(
            f"no API keys are configured, so `aidg serve` listens only on 127.0.0.1, not {host}: set AIDG_API_KEYS "
            '(e.g. \'{"a-long-secret": {"role": "admin"}}\') to serve on other addresses'
        )
    version = version or s.service.model_version
    s = _serve_env(s, data, version)
    if port_in_use(host, port):
        _fail(f"{host}:{port} is in use: stop what listens there or pass --port")
    os.environ["AIDG_SERVICE__COMPILE"] = "true" if compile_ else "false"
    n = workers or os.cpu_count() or 1
    backends = f"store {'redis' if s.redis_url else 'in-process'}, log {'server' if s.database_url else 'SQLite'}"
    err.print(f"AIDG serving version {version} (or the champion of a rollout in the decision log) on "
              f"http://{host}:{port} ({n} workers; {backends}); docs at /docs, dashboard at /dashboard")  # fmt: skip
    if not s.privacy.encryption_key:
        err.print("[yellow]warning:[/] AIDG_PRIVACY__ENCRYPTION_KEY is not set: stored merchant data is not encrypted "
                  "at rest (`aidg config --new-key` makes a key)")  # fmt: skip
    if s.privacy.id_hash_key == "change-me":
        err.print("[yellow]warning:[/] AIDG_PRIVACY__ID_HASH_KEY is the public default: set your own so the hashed "
                  "merchant ids in the logs cannot be recomputed")  # fmt: skip
    raise typer.Exit(run_workers(host, port, n))


@app.command("stream-worker")
def stream_worker(
    consumer: Annotated[str | None, typer.Option(help="Consumer name in the group (default host-pid).")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after this long without events.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Consume the event bus: join reward parts to decisions exactly once, update the bandit posterior and features."""
    import os
    import signal
    import socket

    from aidg.service.backends import make_backends
    from aidg.service.model import refreshed_bundles
    from aidg.stream.rows import FeatureRow
    from aidg.stream.worker import StreamWorker

    s = _settings()
    if not (s.redis_url or s.kafka_bootstrap):
        _fail("a stream worker needs a shared bus: set AIDG_REDIS_URL (Redis Streams) or AIDG_KAFKA_BOOTSTRAP")
    with _user_errors():
        b = make_backends(s)
        b.bus.ping()

        def on_update(row: FeatureRow, payload: dict[str, Any]) -> None:  # write-through to the shared cache
            patched = refreshed_bundles(b.cache, row, payload)
            if patched:
                b.cache.set_many(patched, s.cache.ttl_seconds)

        name = consumer or f"{socket.gethostname()}-{os.getpid()}"
        worker = StreamWorker(b.bus, b.decisions, b.online, s.stream, s.reward, name, on_update)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        err.print(f"stream worker {name} on {s.stream.stream} (group {s.stream.group}); Ctrl-C stops it")
        t0 = time.perf_counter()
        try:
            worker.run(max_seconds=max_seconds, idle_exit_s=idle_exit)
        except KeyboardInterrupt:
            pass
        finally:
            b.close()
    report = {"consumer": name, "messages": worker.messages, "applied": worker.applied,
              "malformed": worker.malformed, "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
    if json_out:
        _emit(report)
    else:
        err.print(f"stopped: {report}")


def _privacy_stores(s: Settings) -> Any:
    from aidg.compliance.erasure import Stores
    from aidg.service.backends import make_backends

    b = make_backends(s)
    return b, Stores(b.decisions, b.online, b.cache, b.bus, s.stream.stream)


@app.command("delete-merchant")
def delete_merchant(
    merchant_id: Annotated[str, typer.Argument(help="The merchant to erase.")],
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Data folders to erase it from (repeatable; default: the served one and the demo world)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Erase a merchant everywhere (right to deletion): decision log and bandit state (unlearned), stream entries,
    online store and cache, offline tables, model manifests and prototypes, snapshots, log lines. With the
    embedded backends, a running `aidg serve` keeps its in-process stores: erase through its DELETE
    /v1/merchants/{id} instead."""
    from aidg.compliance.erasure import erase_merchant

    s = _settings()
    folders = list(data or [])
    if not folders:
        folders = [p for p in (s.service.data, s.paths.home / "demo" / "world") if p is not None and Path(p).is_dir()]
    for f in folders:
        if not Path(f).is_dir():
            _fail(f"--data {f}: no such folder")
    if not yes and not json_out and sys.stdin.isatty():
        typer.confirm(f"erase merchant {merchant_id} from {len(folders)} data folder(s) and every store?", abort=True)
    with _user_errors():
        b, stores = _privacy_stores(s)
        try:
            with _progress("erasing", quiet=json_out) as say:
                report = erase_merchant(s, merchant_id, stores, data_dirs=folders, actor="cli", progress=say)
        finally:
            b.close()
    if json_out:
        _emit(report)
    else:
        err.print(f"erased as {report['erased']} in {report['seconds']} s (audit record {report['audit_id']})")
        for k, v in sorted(report["removed"].items()):
            err.print(f"  {k}: {v}")


@app.command()
def retention(
    days: Annotated[int | None, typer.Option(help="Keep this many days (default: privacy.retention_days, 30).",
                                             min=1)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Purge personal data older than the retention window: decisions, reward events, shadow records, KPI rows,
    stream entries and log lines (docs/privacy.md says what is kept and why)."""
    from aidg.compliance.retention import run_retention

    s = _settings()
    with _user_errors():
        b, stores = _privacy_stores(s)
        try:
            report = run_retention(s, stores, days, actor="cli")
        finally:
            b.close()
    if json_out:
        _emit(report)
    else:
        err.print(f"retention {report['days']} days (before {report['cutoff']}): {report['removed']}")


@app.command()
def config(
    json_out: JsonOpt = False,
    new_key: Annotated[
        bool,
        typer.Option("--new-key", help="Print a fresh encryption key (for AIDG_PRIVACY__ENCRYPTION_KEY) and exit."),
    ] = False,
) -> None:
    """Show the effective settings (memo defaults overridden by AIDG_* variables); the encryption key is masked.

    ``--new-key`` prints a fresh key for AIDG_PRIVACY__ENCRYPTION_KEY instead."""
    from aidg.privacy.crypto import Cipher
    from aidg.privacy.crypto import new_key as make_key

    if new_key:
        key = make_key()
        if json_out:
            _emit({"encryption_key": key})
        else:
            sys.stdout.write(key + "\n")
        return
    s = _settings()
    with _user_errors():
        Cipher.from_settings(s)  # a key that is not a Fernet key: exit 2 naming the variable
    data = s.model_dump(mode="json")
    if data.get("privacy", {}).get("encryption_key"):
        data["privacy"]["encryption_key"] = "***"  # a secret: never printed
    if json_out:
        _emit(data)
        return
    console = Console(soft_wrap=True)
    for group, values in data.items():
        if isinstance(values, dict):
            console.print(f"[bold]{group}[/]: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        else:
            console.print(f"[bold]{group}[/]: {values}")


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the demo world.")] = 7,
    skip_training: Annotated[bool, typer.Option("--skip-training", help="Only simulate and show the world.")] = False,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Exit after the arena instead of serving the API.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the served API (127.0.0.1 only).", min=1, max=65535)] = 8000,
    serve_seconds: Annotated[
        float | None, typer.Option(help="Stop serving after this long (default: until Ctrl-C).", min=0)
    ] = None,
    story: Annotated[
        bool, typer.Option("--story/--no-story", help="Tell the rollout story (good model promoted, bad rolled back).")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Simulate the small world, train and evaluate the models, explain a merchant's deals, run a short policy arena,
    then serve the API on 127.0.0.1 with a simulated client driving traffic (``--no-serve`` exits instead)."""
    from aidg import workflows
    from aidg.demo import run_demo, show_arena, show_models

    s = _settings()
    out = s.paths.home / "demo"
    console = None if json_out else _wide_console()
    with _user_errors():
        if (out / "world").exists():
            shutil.rmtree(out / "world")
        report = _simulate_report("small", seed, out / "world", quiet=json_out)
        summary = run_demo(out, report, console=console)
        if not skip_training:
            with _progress("train", json_out) as update:
                summary["training"] = workflows.train(s, out / "world", scale="small", seed=0, progress=update)
            with _progress("evaluate", json_out) as update:
                summary["evaluation"] = workflows.evaluate(s, out / "world", progress=update)
            merchant = summary["evaluation"].get("example_merchant")
            if merchant is not None:
                with _progress("explain", json_out) as update:
                    summary["explanation"] = workflows.explain(
                        s, out / "world", merchant, change=(0, "discount_pct", 0.4), progress=update
                    )
            with _progress("policy arena", json_out) as update:
                summary["arena"] = workflows.simulate_policy(
                    s, out / "world", rounds=DEMO_ARENA_ROUNDS, days=90, seed=0, progress=update
                )
            if console is not None:
                show_models(summary["training"], summary["evaluation"], console)
                _print_ablation(summary["evaluation"].get("ablation", {}))
                if "explanation" in summary:
                    _print_explanation(summary["explanation"], top=5)
                console.rule("[bold]Choosing among the variants: policies through 90 simulated days, delayed rewards")
                show_arena(summary["arena"], console, out / "arena.png")
            summary.get("arena", {}).pop("curves", None)
            if not no_serve:
                from aidg.demo import serve_demo

                if console is not None:
                    console.rule("[bold]Serving: the API with a simulated client through the event stream")
                summary["serving"] = serve_demo(s, out / "world", console or err, port=port, seconds=serve_seconds,
                                                rate=DEMO_RATE, story=story)  # fmt: skip
    if json_out:
        _emit(summary)


DEMO_RATE = 30.0  # the simulated client's requests per second while serving
DEMO_ARENA_ROUNDS = 5000  # a short arena run; `aidg simulate-policy` runs the full 50k


def main() -> None:
    """Entry point of the ``aidg`` script (merchant ids in its logs only as keyed hashes)."""
    from aidg.privacy.ids import install

    try:
        s = load_settings()
        install(s.privacy.id_hash_key, s.privacy.id_pattern)
    except AIDGError:
        pass  # bad settings: the command itself says what to fix
    app()


if __name__ == "__main__":
    main()
