"""``aidg demo``: the guided tour. Grows with each stage (train → serve → roll out → dashboard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

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
    ("override_floor", "override floor", "{:.3f}"),
    ("safety_violation_rate", "safety violations", "{:.4f}"),
    ("regret_vs_oracle", "regret vs oracle", "{:,.0f}"),
    ("conservative_violation_runs", "conservative violations (runs)", "{:.2f}"),
    ("rounds_per_second", "rounds/s", "{:,.0f}"),
)


def show_arena(report: dict[str, Any], console: Console, plot: Path | None = None) -> Path | None:
    """The arena as a table (one row per policy) and, when asked, the cumulative-reward plot."""
    from aidg.demo.plots import arena_curves, reps_timeline

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
    if ours.get("timeline"):
        weeks = ours["timeline"]
        console.print(
            f"reps in the loop (risk_aware_ts, first seed): override rate {weeks[0]['override_rate']:.1%} in the "
            f"first week → {weeks[-1]['override_rate']:.1%} in the last; {ours['segments_graduated_share']:.0%} of "
            f"{ours['segments']} segments graduated from apprentice; reps' mean trust at the end "
            f"{ours['mean_rep_trust_end']:+.2f}"
        )
        if ours.get("drill"):
            d = ours["drill"]
            after = "not demoted" if d["demoted_after_days"] is None else f"demoted {d['demoted_after_days']} days on"
            console.print(f"drill: segment {d['segment']} bad on purpose from day {d['day']:g}: {after}")
    if plot is None or not report.get("curves"):
        return None
    path = arena_curves(report["curves"], plot)
    console.print(f"plot: {path}")
    timelines = {k: v["timeline"] for k, v in report["policies"].items() if v.get("timeline")}
    if timelines:
        console.print(f"plot: {reps_timeline(timelines, plot.with_name('arena_reps.png'))}")
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
            "response model (scorer + each merchant's record): Spearman vs true expected reward",
            e.get("reward_spearman"),
            f"GBM + records {nested(e, 'scorer_vs_baseline', 'gbm', 'reward_spearman'):.3f}; "
            f"scorer alone {nested(e, 'scorer_alone', 'reward_spearman'):.3f}",
        ),
        (
            "response model: NDCG@5 of each merchant's 50 variants",
            e.get("ndcg_at_5"),
            f"GBM + records {nested(e, 'scorer_vs_baseline', 'gbm', 'ndcg_at_5'):.3f}",
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


def nested(d: dict[str, Any], *keys: str) -> float:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return float("nan")
        d = d[k]
    return float(d)  # type: ignore[arg-type]
