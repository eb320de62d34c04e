"""Point-in-time lookups over per-merchant event streams (the core of every sequence feature).

An event stream is sorted by (merchant, time). A query (merchant, cutoff) gets
the indices of that merchant's ``length`` latest events strictly before the
cutoff, left-padded with -1, so nothing at or after the cutoff ever leaks in.

>>> import numpy as np
>>> s = EventStream(np.array([0, 0, 0, 1]), np.array([10, 20, 30, 5]))
>>> s.last_before(np.array([0, 1, 0]), np.array([25, 5, 10]), length=3).tolist()
[[-1, 0, 1], [-1, -1, -1], [-1, -1, -1]]
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def to_seconds(ts: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Timestamps as int64 seconds since the epoch (NaT → a huge value: never 'before' a cutoff)."""
    arr = pd.to_datetime(pd.Series(np.asarray(ts))).astype("datetime64[s]")
    out = arr.to_numpy().astype("int64")
    out[arr.isna().to_numpy()] = np.iinfo(np.int64).max // 4
    return out


def cutoff_seconds(at: pd.Timestamp | str) -> int:
    """A date as :func:`to_seconds` codes it (what is known before it is what happened before this second)."""
    return int(to_seconds(np.array([pd.Timestamp(at)], dtype="datetime64[ns]"))[0])


class EventStream:
    """Events of many merchants, sorted by (merchant code, time in seconds)."""

    def __init__(self, merchant: np.ndarray, time: np.ndarray) -> None:
        order = np.lexsort((time, merchant))
        self.order = order  # position in the sorted stream -> original row
        self.merchant = np.asarray(merchant, dtype=np.int64)[order]
        self.time = np.asarray(time, dtype=np.int64)[order]
        self._t0 = int(self.time.min()) if len(self.time) else 0
        span = int(self.time.max()) - self._t0 + 2 if len(self.time) else 2
        self._span = span
        self._key = self.merchant * span + (self.time - self._t0)

    def last_before(self, q_merchant: np.ndarray, q_time: np.ndarray, length: int) -> np.ndarray:
        """(Q, length) positions in the sorted stream of each query's latest events before its cutoff; -1 pads."""
        q_m = np.asarray(q_merchant, dtype=np.int64)
        q_t = np.clip(np.asarray(q_time, dtype=np.int64) - self._t0, -1, self._span - 1)
        pos = np.searchsorted(self._key, q_m * self._span + q_t, side="left")
        start = np.searchsorted(self.merchant, q_m, side="left")
        idx = pos[:, None] - length + np.arange(length)[None, :]
        idx[idx < start[:, None]] = -1
        return idx

    def count_before(self, q_merchant: np.ndarray, q_time: np.ndarray) -> np.ndarray:
        """How many of each query merchant's events lie strictly before its cutoff."""
        q_m = np.asarray(q_merchant, dtype=np.int64)
        q_t = np.clip(np.asarray(q_time, dtype=np.int64) - self._t0, -1, self._span - 1)
        pos = np.searchsorted(self._key, q_m * self._span + q_t, side="left")
        return np.asarray(pos - np.searchsorted(self.merchant, q_m, side="left"))


def gather(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values[idx]`` with -1 → zeros; values (N, F) and idx (Q, L) give (Q, L, F)."""
    out = values[np.maximum(idx, 0)]
    out[idx < 0] = 0
    return out
