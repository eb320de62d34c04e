"""The score memo hands back a value only for the very bytes it was computed from, within its memory budget."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from aidg.errors import ConfigError
from aidg.online.score_memo import ScoreMemo


def _compute(calls: list[bytes]) -> Callable[[bytes], np.ndarray]:
    def compute(raw: bytes) -> np.ndarray:
        calls.append(raw)
        return np.frombuffer(raw, np.uint8).astype(float)

    return compute


def _memo(max_bytes: int) -> ScoreMemo[np.ndarray]:
    return ScoreMemo(max_bytes, lambda raw, v: len(raw) + v.nbytes)


def test_a_hit_needs_the_same_bytes_and_a_changed_bundle_is_computed_again() -> None:
    calls: list[bytes] = []
    memo, compute = _memo(1 << 20), _compute(calls)
    raw = bytes([1, 2, 3])
    first = memo.get("v1/m|d|3", raw, compute)
    assert memo.get("v1/m|d|3", raw, compute) is first  # the same object: no second forward pass
    assert memo.get("v1/m|d|3", bytes([1, 2, 3]), compute) is first  # equal bytes read again hit too
    assert len(calls) == 1 and (memo.hits, memo.misses) == (2, 1)
    patched = memo.get("v1/m|d|3", bytes([1, 2, 4]), compute)  # the stream worker patched the bundle
    assert len(calls) == 2 and patched.tolist() == [1.0, 2.0, 4.0]
    assert memo.nbytes == 3 + 24 and len(memo) == 1


def test_the_budget_evicts_the_least_recently_read_and_discard_forgets_a_merchant() -> None:
    calls: list[bytes] = []
    compute = _compute(calls)
    size = 100 + 800
    memo = _memo(2 * size + size // 2)  # room for two entries
    for k in ("a|1", "b|1", "a|1", "c|1"):  # a read again before c arrives: b is the one out
        memo.get(k, bytes(100), compute)
    assert len(memo) == 2 and memo.nbytes == 2 * size
    before = len(calls)
    memo.get("a|1", bytes(100), compute)
    memo.get("b|1", bytes(100), compute)
    assert len(calls) == before + 1  # a was kept, b computed again
    assert memo.discard("a|") == 1 and memo.get("a|1", bytes(100), compute) is not None
    assert len(calls) == before + 2
    n = len(memo)
    memo.get("big", bytes(10_000), compute)  # larger than the whole budget: computed, not kept
    assert len(memo) == n and memo.nbytes <= memo.max_bytes


def test_a_failed_computation_is_not_remembered_a_zero_budget_computes_every_time() -> None:
    memo = _memo(1 << 20)

    def broken(raw: bytes) -> np.ndarray:
        raise ValueError("NaN score")

    with pytest.raises(ValueError, match="NaN"):
        memo.get("k", b"x", broken)
    calls: list[bytes] = []
    assert memo.get("k", b"x", _compute(calls)).tolist() == [120.0] and len(calls) == 1
    off = _memo(0)
    for _ in range(3):
        off.get("k", b"x", _compute(calls))
    assert len(calls) == 4 and len(off) == 0
    with pytest.raises(ConfigError, match="≥ 0"):
        _memo(-1)
