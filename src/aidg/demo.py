"""``aidg demo``: the guided tour. Grows with each stage (train → serve → roll out → dashboard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from aidg.plots import best_discount_histogram, response_curves
from aidg.store import load_world


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
        + "` proposes and explains one merchant's deals once trained; serving and rollout arrive with the "
        "next stages (see README)."
    )
