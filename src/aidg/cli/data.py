"""Data commands: simulate a world, validate a data folder, print the schema."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from aidg.cli.common import JsonOpt, app, emit, err, fail, progress_bar, user_errors
from aidg.errors import DataError, DataValidationError


def simulate_report(scale: str, seed: int, out: Path, quiet: bool = False, rep_trust: bool = True) -> dict[str, Any]:
    from aidg.sim import graph_size, personalization, simulate
    from aidg.sim.reps import TrustConfig
    from aidg.sim.storage import save_world

    t0 = time.perf_counter()
    trust = TrustConfig() if rep_trust else TrustConfig.off()
    with progress_bar(f"simulate {scale}", quiet) as update:
        world = simulate(scale, seed=seed, progress=lambda s, f: update(s, 0.6 * f), rep_trust=trust)
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
        "rep_trust": "on" if rep_trust else "off",
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
    rep_trust: Annotated[str, typer.Option(
        help="on: reps edit less as AIDG earns their trust and more after its flops (docs/simulator.md); "
             "off: reps without memory (the behaviour before).")] = "on",
    json_out: JsonOpt = False,
) -> None:
    """Simulate a marketplace with ground truth and write its tables."""
    with user_errors():
        from aidg.sim import get_scale

        get_scale(scale)
        if rep_trust not in ("on", "off"):
            raise DataError(f"--rep-trust takes on or off, got {rep_trust!r}")
        report = simulate_report(scale, seed, out, quiet=json_out, rep_trust=rep_trust == "on")
    if json_out:
        emit(report)
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
    with user_errors():
        try:
            tables, _ = store.load()
            problems: list[Any] = []
        except DataValidationError as exc:
            tables, problems = {}, exc.problems
            more = exc.more
    if not store.tables():
        fail(f"{data} holds no table files (expected e.g. {data}/merchants.parquet; see docs/data-schema.md)")
    ok = not problems
    if json_out:
        emit(
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
def schema() -> None:
    """Print the data schema as Markdown (the contract every data folder follows; docs/data-schema.md)."""
    from aidg.store import schema_markdown

    sys.stdout.write(schema_markdown())
