"""The score memo hands back a result only for the very bytes it was computed from, within its memory budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from aidg.errors import ConfigError
from aidg.online.bundle import Bundle
from aidg.online.score_memo import ScoreMemo


def _compute(calls: list[bytes]) -> Any:
    def compute(raw: bytes) -> tuple[Bundle, dict[str, np.ndarray]]:
        calls.append(raw)
        b = Bundle("m", "2026-01-01", "food", 0.3, (torch.zeros(1, 4),), torch.zeros(1, 3, 2),
                   torch.zeros(1, 3, dtype=torch.int64), np.zeros(4), {"price": np.zeros(3)},
                   {"type": ["safe", "safe", "current"]})  # fmt: skip
        return b, {"score": np.frombuffer(raw, np.uint8).astype(float)}

    return compute


def test_a_hit_needs_the_same_bytes_and_a_changed_bundle_is_scored_again() -> None:
    calls: list[bytes] = []
    memo, compute = ScoreMemo(1 << 20), _compute(calls)
    raw = bytes([1, 2, 3])
    first = memo.get("v1/m|d|3", raw, compute)
    again = memo.get("v1/m|d|3", raw, compute)
    assert again[0] is first[0] and again[1] is first[1]  # the same objects: no second forward pass
    assert memo.get("v1/m|d|3", bytes([1, 2, 3]), compute)[1]["score"] is first[1]["score"]  # equal bytes hit too
    assert len(calls) == 1 and (memo.hits, memo.misses) == (2, 1)
    patched = memo.get("v1/m|d|3", bytes([1, 2, 4]), compute)  # the stream worker patched the bundle
    assert len(calls) == 2 and patched[1]["score"].tolist() == [1.0, 2.0, 4.0]
    with pytest.raises(ValueError, match="read-only"):
        patched[1]["score"][0] = 9.0  # a caller may not change what the next request reads


def test_the_budget_evicts_the_least_recently_read_and_discard_forgets_a_merchant() -> None:
    calls: list[bytes] = []
    compute = _compute(calls)
    one = ScoreMemo(1 << 20)
    one.get("k", bytes(100), compute)
    size = one.nbytes
    memo = ScoreMemo(2 * size + size // 2)  # room for two entries
    for k in ("a|1", "b|1", "a|1", "c|1"):  # a read again before c arrives: b is the one out
        memo.get(k, bytes(100), compute)
    assert len(memo) == 2 and memo.nbytes <= memo.max_bytes
    before = len(calls)
    memo.get("a|1", bytes(100), compute)
    memo.get("b|1", bytes(100), compute)
    assert len(calls) == before + 1  # a was kept, b recomputed
    assert memo.discard("a|") == 1 and memo.get("a|1", bytes(100), compute) and len(calls) == before + 2


def test_a_zero_budget_scores_every_request_and_a_negative_one_is_refused() -> None:
    calls: list[bytes] = []
    memo = ScoreMemo(0)
    for _ in range(3):
        out = memo.get("k", b"x", _compute(calls))[1]
    assert len(calls) == 3 and len(memo) == 0 and out["score"].flags.writeable
    with pytest.raises(ConfigError, match="≥ 0"):
        ScoreMemo(-1)
