"""Privacy and settings commands: erase a merchant, apply retention, show the settings or make a key."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from aidg.cli.common import JsonOpt, app, cli_settings, emit, err, fail, progress_bar, user_errors
from aidg.config import Settings


def _privacy_stores(s: Settings) -> Any:
    from aidg.compliance.erasure import Stores
    from aidg.service.backends import make_backends

    b = make_backends(s)
    return b, Stores.of(b, s)


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

    s = cli_settings()
    folders = list(data or [])
    if not folders:
        folders = [p for p in (s.service.data, s.paths.home / "demo" / "world") if p is not None and Path(p).is_dir()]
    for f in folders:
        if not Path(f).is_dir():
            fail(f"--data {f}: no such folder")
    if not yes and not json_out and sys.stdin.isatty():
        typer.confirm(f"erase merchant {merchant_id} from {len(folders)} data folder(s) and every store?", abort=True)
    with user_errors():
        b, stores = _privacy_stores(s)
        try:
            with progress_bar("erasing", quiet=json_out) as say:
                report = erase_merchant(s, merchant_id, stores, data_dirs=folders, actor="cli", progress=say)
        finally:
            b.close()
    if json_out:
        emit(report)
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

    s = cli_settings()
    with user_errors():
        b, stores = _privacy_stores(s)
        try:
            report = run_retention(s, stores, days, actor="cli")
        finally:
            b.close()
    if json_out:
        emit(report)
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
            emit({"encryption_key": key})
        else:
            sys.stdout.write(key + "\n")
        return
    s = cli_settings()
    with user_errors():
        Cipher.from_settings(s)  # a key that is not a Fernet key: exit 2 naming the variable
    data = s.model_dump(mode="json")
    if data.get("privacy", {}).get("encryption_key"):
        data["privacy"]["encryption_key"] = "***"  # a secret: never printed
    if json_out:
        emit(data)
        return
    console = Console(soft_wrap=True)
    for group, values in data.items():
        if isinstance(values, dict):
            console.print(f"[bold]{group}[/]: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        else:
            console.print(f"[bold]{group}[/]: {values}")
