"""What every command shares: the Typer app, clear errors instead of tracebacks, JSON output, progress bars
and report tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from aidg.config import Settings, load_settings
from aidg.errors import AIDGError

app = typer.Typer(
    name="aidg",
    help="AIDG, the AI Deal Generator: simulate a marketplace, validate data, train and evaluate the models, explain a "
    "merchant's deals, run the policy arena, serve the API and roll models out, erase a merchant.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)  # messages stay on one line, greppable
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a report.")]


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn AIDG's own errors into a clear message and exit code 2 (never a traceback)."""
    try:
        yield
    except AIDGError as exc:
        fail(str(exc))


def cli_settings() -> Settings:
    with user_errors():
        return load_settings()


def wide_console() -> Console:
    """stdout console; wide enough for the demo's tables when output is not a terminal."""
    c = Console()
    return c if c.is_terminal else Console(width=140)


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


@contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator[Callable[[str, float], None]]:
    """A Rich progress bar on stderr with the time spent and an ETA (from the fraction's pace so far); yields
    ``update(stage, fraction)``."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task(label, total=1.0)

        def update(stage: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"{label}: {stage}")

        yield update


def print_report(title: str, metrics: dict[str, Any], seconds: dict[str, Any]) -> None:
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


def print_ablation(ablation: dict[str, dict[str, float]]) -> None:
    if not ablation:
        return
    t = Table(title="Ablation: downstream GP30-uplift error on held-out merchants with one branch removed")
    for col in ("branch removed", "RMSE", "RMSE increase"):
        t.add_column(col, justify="left" if col == "branch removed" else "right")
    for k, r in ablation.items():
        t.add_row(k, f"{r['rmse']:.4f}", f"{r['rmse_increase']:+.4f}")
    Console(soft_wrap=True).print(t)
