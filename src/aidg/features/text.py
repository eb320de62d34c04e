"""Text preparation for the sentiment branch: point-in-time note selection and a readability check.

The sentiment encoder (all-MiniLM-L6-v2) is an English, uncased model: notes
written mostly in another script (Cyrillic, CJK, Arabic, …) come out of its
tokenizer as ``[UNK]`` tokens and carry no signal. :func:`split_readable`
separates them so training and scoring can skip them and say how many were
skipped, instead of learning noise or crashing.

>>> non_latin_share(["Great deal!", "Отличная сделка", "café ok", "123 !!", ""]).round(2).tolist()
[0.0, 1.0, 0.0, 0.0, 0.0]
>>> readable_mask(["Great deal!", "Отличная сделка", "   "]).tolist()
[True, False, False]
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from aidg.errors import ConfigError, DataError

MAX_NON_LATIN = 0.5  # a note whose letters are more than half non-Latin is unreadable for the English encoder
NOTE_COLUMNS = ("merchant_id", "text", "at")  # what latest_notes needs of the feedback_notes table


@lru_cache(maxsize=8192)
def _script(ch: str) -> str:
    """The script of one letter, as the first word of its Unicode name (``LATIN``, ``CYRILLIC``, ``CJK``, …)."""
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def _letters(text: object) -> list[str]:
    if not isinstance(text, str):
        return []
    return [c for c in text if c.isalpha()]


def non_latin_share(texts: Iterable[object]) -> np.ndarray:
    """Share of each text's letters that are not Latin (digits, spaces and punctuation are ignored).

    Args:
        texts: notes; anything that is not a string (``None``, ``NaN``) counts as having no letters.

    Returns:
        float64 array of shares in [0, 1], one per text; 0 for a text without letters.
    """
    out: list[float] = []
    for text in texts:
        if isinstance(text, str) and text.isascii():
            out.append(0.0)  # fast path: almost every note
            continue
        letters = _letters(text)
        if not letters:
            out.append(0.0)
            continue
        out.append(sum(_script(c) != "LATIN" for c in letters) / len(letters))
    return np.asarray(out, dtype=np.float64)


def readable_mask(texts: Sequence[object], max_non_latin: float = MAX_NON_LATIN) -> np.ndarray:
    """True where the English encoder can read the note: non-empty and mostly Latin letters.

    Args:
        texts: notes.
        max_non_latin: largest share of non-Latin letters a readable note may have.

    Returns:
        bool array, one per text.
    """
    if not 0 <= max_non_latin <= 1:
        raise ConfigError(f"max_non_latin must lie in [0, 1], got {max_non_latin}")
    nonempty = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], dtype=bool)
    return nonempty & (non_latin_share(texts) <= max_non_latin)


def dominant_script(text: object) -> str:
    """The most frequent non-Latin script among the letters of ``text``; ``"empty"`` or ``"LATIN"`` otherwise.

    >>> dominant_script("Отличная сделка"), dominant_script("交易很好"), dominant_script("  ")
    ('CYRILLIC', 'CJK', 'empty')
    """
    letters = _letters(text)
    if not letters:
        return "empty"
    counts = Counter(s for s in map(_script, letters) if s != "LATIN")
    return counts.most_common(1)[0][0] if counts else "LATIN"


def split_readable(
    notes: pd.DataFrame, *, text_column: str = "text", max_non_latin: float = MAX_NON_LATIN
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split notes into those the encoder can read and those it cannot (empty or mostly non-Latin).

    Args:
        notes: any table with a text column (``feedback_notes`` or a slice of it).
        text_column: the column holding the text.
        max_non_latin: see :func:`readable_mask`.

    Returns:
        ``(usable, skipped)``: two row subsets of ``notes`` in their original order.
    """
    if text_column not in notes.columns:
        raise DataError(f"the notes have no {text_column!r} column (columns: {', '.join(map(str, notes.columns))})")
    mask = readable_mask(notes[text_column].tolist(), max_non_latin)
    return notes[mask], notes[~mask]


def skipped_message(skipped: pd.DataFrame, total: int, *, text_column: str = "text", what: str = "notes") -> str:
    """One line saying how many notes were skipped as unreadable and in which scripts; ``""`` when none.

    >>> df = pd.DataFrame({"text": ["Отличная сделка", "交易很好", "Плохо"]})
    >>> skipped_message(df, 1000)
    'skipped 3 of 1,000 notes (0.3 %) that the English sentiment encoder cannot read: CYRILLIC 2, CJK 1'
    """
    if skipped.empty:
        return ""
    counts = Counter(dominant_script(t) for t in skipped[text_column].tolist())
    scripts = ", ".join(f"{name} {n}" for name, n in counts.most_common())
    share = 100 * len(skipped) / max(total, 1)
    return (
        f"skipped {len(skipped):,} of {total:,} {what} ({share:.1f} %) that the English sentiment encoder "
        f"cannot read: {scripts}"
    )


def _naive_utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def latest_notes(notes: pd.DataFrame, merchant_ids: Iterable[str], as_of: object, k: int = 5) -> pd.DataFrame:
    """For each merchant, its ``k`` most recent notes written strictly before ``as_of``.

    Point-in-time correct: a note written at or after ``as_of`` is never returned,
    so a feature built at ``as_of`` cannot see the future. Times are compared in
    UTC; a timezone-naive ``as_of`` or ``at`` column is taken to be UTC already.

    Args:
        notes: the ``feedback_notes`` table (needs ``merchant_id``, ``text``, ``at``).
        merchant_ids: merchants to look up; a merchant without earlier notes is simply absent.
        as_of: the cut-off (anything ``pd.Timestamp`` accepts).
        k: how many notes per merchant, at most.

    Returns:
        The selected rows (all columns of ``notes``), sorted by merchant and then
        oldest to newest, with a fresh index.

    >>> notes = pd.DataFrame({
    ...     "merchant_id": ["m1", "m1", "m1", "m2"],
    ...     "text": ["a", "b", "c", "d"],
    ...     "at": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-01-15"]),
    ... })
    >>> latest_notes(notes, ["m1", "m2"], "2025-03-01", k=1)["text"].tolist()
    ['b', 'd']
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    missing = [c for c in NOTE_COLUMNS if c not in notes.columns]
    if missing:
        raise DataError(f"the notes table lacks column(s) {', '.join(missing)} needed to pick the latest notes")
    cut = _naive_utc(pd.Timestamp(as_of))  # type: ignore[arg-type]
    at = pd.to_datetime(notes["at"])
    if getattr(at.dt, "tz", None) is not None:
        at = at.dt.tz_convert("UTC").dt.tz_localize(None)
    ids = pd.Index(pd.unique(pd.Series(list(merchant_ids), dtype=object)))
    keep = notes["merchant_id"].isin(ids).to_numpy() & (at < cut).to_numpy()
    picked = notes[keep].assign(_at=at[keep])
    order = ["merchant_id", "_at"] + (["note_id"] if "note_id" in picked.columns else [])
    picked = picked.sort_values(order, kind="stable")
    return picked.groupby("merchant_id", sort=False).tail(k).drop(columns="_at").reset_index(drop=True)
