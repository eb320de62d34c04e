from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.errors import ConfigError, DataError
from aidg.features.text import latest_notes, non_latin_share, readable_mask, skipped_message, split_readable
from aidg.sim import World


def test_latest_notes_never_sees_the_future(tiny_world: World) -> None:
    notes = tiny_world.tables["feedback_notes"]
    as_of = notes["at"].quantile(0.5)
    merchants = notes["merchant_id"].drop_duplicates().tolist()[:40]
    got = latest_notes(notes, merchants, as_of, k=3)
    assert len(got) > 0
    assert (got["at"] < as_of).all()
    assert got.groupby("merchant_id").size().max() <= 3
    for mid, picked in got.groupby("merchant_id"):
        past = notes[(notes["merchant_id"] == mid) & (notes["at"] < as_of)]
        assert sorted(picked["note_id"]) == sorted(past.nlargest(3, "at")["note_id"])


def test_a_note_written_exactly_at_as_of_is_not_used() -> None:
    notes = pd.DataFrame(
        {
            "note_id": ["n1", "n2", "n3"],
            "merchant_id": ["m1", "m1", "m1"],
            "text": ["old", "at the cut", "later"],
            "at": pd.to_datetime(["2025-01-01", "2025-06-01", "2025-07-01"]),
        }
    )
    assert latest_notes(notes, ["m1"], "2025-06-01")["text"].tolist() == ["old"]
    # a timezone-aware cut-off is compared in UTC: 02:00+02:00 is midnight UTC, the same instant
    assert latest_notes(notes, ["m1"], pd.Timestamp("2025-06-01 02:00", tz="Europe/Berlin"))["text"].tolist() == ["old"]
    assert latest_notes(notes, ["m2"], "2026-01-01").empty


def test_latest_notes_rejects_bad_arguments() -> None:
    notes = pd.DataFrame({"merchant_id": ["m1"], "text": ["x"]})
    with pytest.raises(DataError, match="at"):
        latest_notes(notes, ["m1"], "2025-01-01")
    with pytest.raises(ConfigError, match="k must be at least 1"):
        latest_notes(notes.assign(at=pd.Timestamp("2024-01-01")), ["m1"], "2025-01-01", k=0)


def test_notes_in_another_script_are_reported_unusable() -> None:
    texts = [
        "Merchant is thrilled with the 20% deal.",
        "Продавец очень недоволен скидкой.",  # Cyrillic
        "商家对这次促销非常满意",  # CJK
        "Owner says the café promo was fine.",  # accented Latin is fine
        "",
        "Deal ok, но владелец недоволен результатом",  # mostly Cyrillic
    ]
    share = non_latin_share(texts)
    assert share[0] == 0 and share[1] == 1 and share[2] == 1 and share[3] == 0 and share[5] > 0.5
    assert readable_mask(texts).tolist() == [True, False, False, True, False, False]
    usable, skipped = split_readable(pd.DataFrame({"text": texts}))
    assert len(usable) == 2 and len(skipped) == 4
    message = skipped_message(skipped, len(texts))
    assert message.startswith("skipped 4 of 6 notes") and "CYRILLIC 2" in message and "CJK 1" in message
    assert skipped_message(skipped.iloc[:0], 6) == ""


def test_readable_mask_checks_its_threshold() -> None:
    with pytest.raises(ConfigError, match="max_non_latin"):
        readable_mask(["x"], max_non_latin=1.5)
    assert non_latin_share([]).shape == (0,) and non_latin_share([None, np.nan]).tolist() == [0.0, 0.0]
