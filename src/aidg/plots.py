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
