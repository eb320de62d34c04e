"""Static plots for reports and the demo (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _save(fig: Figure, out: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def response_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], out: Path, title: str) -> Path:
    """Plot expected GP30 (as % of each merchant's own best) against discount, optimum marked.

    Args:
        curves: label -> (discounts, expected GP30, best discount).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, (x, y, best) in curves.items():
        rel = 100 * y / y.max()
        (line,) = ax.plot(x * 100, rel, label=label, linewidth=2)
        ax.plot(best * 100, float(np.interp(best, x, rel)), "o", color=line.get_color(), markersize=8)
    ax.set_xlabel("discount (%)")
    ax.set_ylabel("true expected GP30, % of own best")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out)


def best_discount_histogram(counts: dict[float, int], out: Path) -> Path:
    """Bar chart: how many merchants have their oracle-best deal in each discount bucket."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = pd.Series(counts).sort_index()
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=110)
    ax.bar([f"{round(k * 100)}%" for k in s.index], s.to_numpy(), color="#3b7dd8")
    ax.set_xlabel("oracle-best discount")
    ax.set_ylabel("merchants")
    ax.set_title("No single discount is best for everyone")
    return _save(fig, out)


def arena_curves(curves: dict[str, list[float]], out: Path, alpha: float = 0.1) -> Path:
    """Cumulative true reward of each policy day by day, as a ratio to the current system's (the floor drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    base = np.asarray(curves["current"], float) if "current" in curves else None
    for name, c in curves.items():
        y = np.asarray(c, float)
        if base is not None:
            y = np.divide(y, base, out=np.full_like(y, np.nan), where=base != 0)
        ax.plot(np.arange(1, len(y) + 1), y, label=name, linewidth=2.5 if name == "risk_aware_ts" else 1.4)
    if base is not None:
        ax.axhline(1 - alpha, color="crimson", linestyle="--", linewidth=1, label=f"conservative floor (1 − {alpha:g})")
        ax.set_ylabel("cumulative true reward ÷ current system's")
    else:
        ax.set_ylabel("cumulative true reward")
    ax.set_xlabel("simulated day")
    ax.set_title("Policy arena: cumulative reward against the simulator's truth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out)


def reps_timeline(timelines: dict[str, list[dict[str, float]]], out: Path) -> Path:
    """Reps in the arena's loop, week by week per policy: override rate, GP30 uplift over the current deals, safety
    violations, and (``risk_aware_ts``, else the first AIDG policy) the share of decisions at each autonomy level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=110, sharex=True)
    panels = (("override_rate", "override rate (memo KPI < 20 %)", 0.2), ("gp30_uplift_vs_current",
              "GP30 uplift vs the current deals", None), ("safety_violation_rate", "safety violation rate", 0.01))
    for ax, (key, label, bar) in zip(axes.flat, panels, strict=False):
        for name, rows in timelines.items():
            ax.plot([r["day"] for r in rows], [r[key] for r in rows], marker="o", ms=3, label=name,
                    linewidth=2.5 if name == "risk_aware_ts" else 1.3)  # fmt: skip
        if bar is not None:
            ax.axhline(bar, color="crimson", linestyle="--", linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    ours = "risk_aware_ts" if "risk_aware_ts" in timelines else next((k for k in timelines if k != "current"), None)
    ax = axes.flat[3]
    if ours is not None:
        rows = timelines[ours]
        levels = ("apprentice", "copilot", "autopilot")
        ax.stackplot([r["day"] for r in rows], *[[r[f"share_{lv}"] for r in rows] for lv in levels], labels=levels,
                     colors=("#c9ced8", "#7aa6e8", "#6cc48f"))  # fmt: skip
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(f"{ours}: share of decisions at each autonomy level", fontsize=10)
    for a in axes[1]:
        a.set_xlabel("simulated day (weekly buckets)")
    return _save(fig, out)


def soak_timeline(
    rss: list[tuple[float, float]], p95_per_minute: list[float | None], windows: tuple[float, float, float], out: Path
) -> Path:
    """``bench/soak.py``: resident memory (MB) and generate's p95 per minute over the run, the compared windows
    shaded (``windows`` = warm-up, window and total minutes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warm, window, total = windows
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    top.plot([t for t, _ in rss], [m for _, m in rss], color="tab:blue")
    top.set_ylabel("RSS, service + worker (MB)")
    top.set_ylim(bottom=0)
    minutes = [i + 0.5 for i, v in enumerate(p95_per_minute) if v is not None]
    bottom.plot(minutes, [v for v in p95_per_minute if v is not None], marker="o", ms=3, color="tab:orange")
    bottom.set_ylabel("generate p95 per minute (ms)")
    bottom.set_xlabel("minutes")
    bottom.set_ylim(bottom=0)
    for ax in (top, bottom):
        ax.axvspan(warm, warm + window, color="0.85", zorder=0)
        ax.axvspan(total - window, total, color="0.85", zorder=0)
        ax.grid(alpha=0.3)
    top.set_title("Soak: memory and latency (shaded: the first and last windows compared)")
    return _save(fig, out)
