"""How long work reports its progress: ``progress(stage, fraction)``, fraction in [0, 1] (the CLI draws a bar)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]


def no_progress(stage: str, fraction: float) -> None:
    """The progress callback that reports nothing (the default of every long function)."""
    return None


__all__ = ["Progress", "no_progress"]
