"""Model commands: train, evaluate, explain a merchant's deals, score every merchant, audit privacy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aidg.cli.common import (
    JsonOpt,
    app,
    cli_settings,
    emit,
    fail,
    print_ablation,
    print_report,
    progress_bar,
    user_errors,
    wide_console,
)


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
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train on N processes (PyTorch DistributedDataParallel over gloo, started through torchrun); "
            "rank 0 registers the version.",
        ),
    ] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Train the merchant-profile encoders and register the model as a new version (MLflow)."""
    from aidg import workflows
    from aidg.training import distributed

    if nproc > 1 and dp:
        fail("--dp trains on one process (DP-SGD accounts per process): drop --nproc or --dp")
    if nproc > 1 and not distributed.launched():
        argv = ["train", "--data", str(data), "--scale", scale, "--seed", str(seed), "--dp" if dp else "--no-dp",
                *(["--sentiment-full"] if sentiment_full else []), *(["--json"] if json_out else [])]  # fmt: skip
        raise typer.Exit(distributed.launch(nproc, argv))
    s = cli_settings()
    distributed.init_from_env()
    try:
        with user_errors(), progress_bar("train", json_out or not distributed.is_main()) as update:
            report = workflows.train(s, data, scale=scale, seed=seed, sentiment_full=sentiment_full, progress=update,
                                     dp=dp)  # fmt: skip
    finally:
        distributed.shutdown()
    if report.get("rank", 0) != 0:
        return  # rank 0 reports
    if json_out:
        emit(report)
        return
    title = f"Trained aidg-merchant-profile version {report['version']} in {report['seconds']} s"
    if report.get("dp_epsilon") is not None:
        title += f" (DP: ε = {report['dp_epsilon']:.3f}, δ = {report['dp_delta']:.2g}, the merchant as the unit)"
    print_report(title, report["metrics"], report["stage_seconds"])


@app.command("audit-privacy")
def audit_privacy(
    data: Annotated[Path, typer.Option(help="Data folder (aidg simulate's output: its truth measures the utility).")],
    scale: Annotated[str, typer.Option(help="Training budget: tiny or small (default).")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of the split and of both trainings.")] = 0,
    references: Annotated[
        int, typer.Option(min=0, help="Reference models per run for the likelihood-ratio attack (0: none).")
    ] = 2,
    arena_rounds: Annotated[
        int, typer.Option(min=0, help="Policy-arena rounds judging each model's decisions (0: no arena).")
    ] = 50_000,
    arena_seeds: Annotated[int, typer.Option(min=1, help="Arena seeds per model.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    """Privacy audit: train with and without DP, attack both (loss and likelihood-ratio attacks), and compare their
    scorers' reward Spearman and their decisions' share of the oracle's gain."""
    from aidg import workflows

    s = cli_settings()
    if scale not in ("tiny", "small"):
        fail(f"unknown audit scale {scale!r}; choose tiny or small")
    with user_errors(), progress_bar("audit-privacy", json_out) as update:
        report = workflows.audit_privacy(
            s, data, scale=scale, seed=seed, references=references, arena_rounds=arena_rounds,
            arena_seeds=arena_seeds, progress=update,
        )  # fmt: skip
    if json_out:
        emit(report)
        return
    keys = (
        "dp_epsilon", "dp_delta", "mia_auc_dp", "mia_auc_nondp", "lira_auc_dp", "lira_auc_nondp",
        "reward_spearman_dp", "reward_spearman_nondp", "dp_oracle_gain_share", "nondp_oracle_gain_share",
    )  # fmt: skip
    figures = {k: report[k] for k in (*keys, "dp_utility_cost")}
    figures.update({f"accept: {k}": v for k, v in report["acceptance"].items()})
    print_report(f"Privacy audit of {report['train_merchants']} training merchants", figures, report["seconds"])


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="The data folder the model was trained on (its held-out merchants).")],
    version: Annotated[str, typer.Option(help="Model version, or 'latest'.")] = "latest",
    json_out: JsonOpt = False,
) -> None:
    """Evaluate a trained model on held-out merchants (against the simulator's truth where there is one)."""
    from aidg import workflows

    s = cli_settings()
    with user_errors(), progress_bar("evaluate", json_out) as update:
        report = workflows.evaluate(s, data, version=version, progress=update)
    if json_out:
        emit(report)
        return
    ablation = report.pop("ablation", {})
    print_report(
        f"Evaluation of version {report['version']} on {report['heldout_merchants']} held-out merchants", report, {}
    )
    print_ablation(ablation)


@app.command("score-all")
def score_all(
    data: Annotated[Path, typer.Option(help="The data folder to score (every merchant in it).")],
    out: Annotated[Path, typer.Option(help="The Parquet file to write (written aside, then moved in place).")],
    version: Annotated[str, typer.Option(help="Model version, or 'latest'.")] = "latest",
    variants: Annotated[int | None, typer.Option(help="Variants per merchant (default: bandit.n_candidates).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score every merchant's variants and current deal with a version, as the service would, into Parquet."""
    from aidg.online.score_all import score_all as run

    s = cli_settings()
    if variants is not None and not 1 <= variants <= 200:
        fail(f"--variants: between 1 and 200, got {variants}")
    with user_errors(), progress_bar("score-all", json_out) as update:
        report = run(s, data, out, version=version, n=variants, progress=update)
    if json_out:
        emit(report)
        return
    wide_console().print(
        f"{report['candidates']:,} candidates of {report['merchants']:,} merchants (version {report['model_version']}, "
        f"{report['as_of']}) → {report['out']}: {report['candidates_per_s']:,.0f} candidates/s "
        f"(+{report['load_seconds']} s loading)"
    )


def _parse_what_if(text: str | None) -> tuple[int, str, Any] | None:
    """``VARIANT:TERM=VALUE`` (e.g. ``3:discount_pct=0.4``) → (3, "discount_pct", "0.4")."""
    if text is None:
        return None
    try:
        head, value = text.split("=", 1)
        variant, term = head.split(":", 1)
        return int(variant), term.strip(), value.strip()
    except ValueError:
        fail(f"--what-if takes VARIANT:TERM=VALUE, e.g. 3:discount_pct=0.4 (got {text!r})")


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

    s = cli_settings()
    change = _parse_what_if(what_if)
    if n is not None and n < 1:
        fail(f"--n must be at least 1 (got {n})")
    with user_errors(), progress_bar("explain", json_out) as update:
        report = workflows.explain(
            s, data, merchant, version=version, at=at, n_variants=n, change=change, progress=update
        )
    if json_out:
        emit(report)
        return
    print_explanation(report, top)


def print_explanation(report: dict[str, Any], top: int) -> None:
    console = wide_console()
    if report.get("verdict"):  # the first line: keep the current deal, or which variant is expected to beat it
        style = "yellow" if report["verdict"]["keep_current"] else "green"
        console.print(f"[bold {style}]{report['verdict']['text']}")
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
        t5 = report.get("top5", {}).get(vid)
        if t5:
            names = ", ".join(f["feature"] for f in t5["features"])
            console.print(f"  top-5 ({t5['source']}; attention concentration {t5['attention_concentration']:.2f}× "
                          f"uniform): {names}")  # fmt: skip
        if vid in report["rules"]:
            st = report.get("rule_stats", {}).get(vid)
            said = "" if not st else f" (support {st['support']}, precision {st['precision']:.0%})"
            console.print(f"  rule: {report['rules'][vid]}{said}")
    if report["similar_merchants"]:
        sims = ", ".join(f"{m['merchant_id']} ({m['similarity']:.2f})" for m in report["similar_merchants"])
        age = report.get("prototypes_age_hours")
        console.print(f"similar merchants: {sims}" + ("" if age is None else f" (prototypes {age:.1f} h old)"))
    if report.get("what_if"):
        w = report["what_if"]
        console.print(
            f"what-if {w['term']} {w['from']} → {w['to']}: score {w['score']['change']:+.3f} "
            f"[{w['score']['low']:+.3f}, {w['score']['high']:+.3f}], GP30 uplift {w['uplift']['change']:+.3f}, "
            f"risk {w['risk']['change']:+.3f} ({w['level']:.0%} interval)"
        )
    for note in report.get("notes", []):
        console.print(f"note: {note}")
