"""The golden comparison itself (tests/golden): what it lets through and what it flags."""

from __future__ import annotations

from tests.golden import differences


def test_numbers_are_compared_within_the_tolerance_and_a_moved_figure_is_flagged() -> None:
    assert differences({"reward_spearman": 0.9}, {"reward_spearman": 0.9 * (1 + 1e-6)}) == []
    assert differences({"reward_spearman": 0.9}, {"reward_spearman": 0.95}) == ["/reward_spearman: 0.9 → 0.95"]


def test_surrogate_rules_are_counted_and_other_texts_compared_word_for_word() -> None:
    rules = ["IF x > 6.91e-05 THEN beats", "IF x ≤ 6.91e-05 THEN does not beat"]
    regrown = ["IF x > 2.38e-07 THEN beats", "IF x ≤ 2.38e-07 AND y ≤ 0.1 THEN does not beat"]
    assert differences({"surrogate_rules": rules}, {"surrogate_rules": regrown}) == []
    assert differences({"surrogate_rules": rules}, {"surrogate_rules": rules[:1]}) == ["/surrogate_rules: 2 → 1 items"]
    assert differences({"note": "split at 0.5"}, {"note": "split at 0.5000001"}) == []
    assert differences({"note": "split at 0.5"}, {"note": "split near 0.5"}) != []
