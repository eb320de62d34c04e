"""The policy arena: deal policies through simulated time, judged by the oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aidg.cli.common import JsonOpt, app, cli_settings, emit, progress_bar, user_errors, wide_console
from aidg.policy.names import POLICIES as POLICY_NAMES


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
    without_branch: Annotated[
        str | None,
        typer.Option(help="Comma-separated profile branches to switch off for every merchant (the decision ablation)."),
    ] = None,
    reps: Annotated[bool, typer.Option(
        help="Reps in the loop: each policy meets its own reps (trust), the autonomy dial per segment decides what "
             "they see, AIDG learns from their overrides (--no-reps: every pick shown, reps at trust 0).")] = True,
    drill: Annotated[str | None, typer.Option(
        help="SEGMENT@DAY: make one segment's suggestions bad on purpose from that day (its demotion is reported; "
             "segments are category|city-tier, e.g. spa|1).")] = None,
    merchants: Annotated[int | None, typer.Option(
        help="Replay a seeded random subsample of this many held-out merchants (default: all of them; the memo's "
             "scale holds 8,000).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The policy arena: run deal policies through simulated time with delayed rewards, judged by the oracle."""
    from aidg import workflows
    from aidg.demo.run import show_arena

    s = cli_settings()
    chosen = tuple(p.strip() for p in policies.split(",") if p.strip()) if policies else None
    with user_errors(), progress_bar("arena", json_out) as update:
        report = workflows.simulate_policy(
            s,
            data,
            rounds=rounds,
            days=days,
            seed=seed,
            seeds=seeds,
            policies=chosen,
            version=version,
            without=tuple(b.strip() for b in without_branch.split(",") if b.strip()) if without_branch else (),
            progress=update,
            reps=reps,
            drill=drill,
            merchants=merchants,
        )
    if json_out:
        report.pop("curves", None)
        emit(report)
        return
    show_arena(report, wide_console(), s.paths.home / "arena" / "arena.png")
