"""World sizes. ``small`` trains in minutes on 2 cores; ``full`` is the memo's scale."""

from __future__ import annotations

from dataclasses import dataclass

from aidg.errors import SimulationError


@dataclass(frozen=True)
class Scale:
    name: str
    n_cities: int
    n_merchants: int
    n_reps: int
    proposals_per_merchant: float  # mean; about 65 % are approved and become deals
    history_days: int  # length of the history before the world's as-of date


SCALES: dict[str, Scale] = {
    s.name: s
    for s in [
        # for unit tests: seconds to build
        Scale("tiny", n_cities=4, n_merchants=150, n_reps=12, proposals_per_merchant=12, history_days=540),
        # the default: ~20 deals per merchant
        Scale("small", n_cities=20, n_merchants=2_000, n_reps=100, proposals_per_merchant=31, history_days=730),
        # the memo's scale: merchants + deal configurations ≈ 50k nodes, deals ≈ 500k edges
        Scale("full", n_cities=2_000, n_merchants=40_000, n_reps=2_000, proposals_per_merchant=19, history_days=730),
    ]
}


def get_scale(name: str) -> Scale:
    """The scale called ``name``; a clear error listing the choices otherwise."""
    try:
        return SCALES[name]
    except KeyError:
        raise SimulationError(f"unknown scale {name!r}; choose one of {', '.join(SCALES)}") from None
