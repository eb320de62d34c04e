"""Which merchants train and which are held out: a seeded split every stage shares."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MerchantSplit:
    """Train and held-out merchant ids (disjoint, together all merchants).

    >>> s = split_merchants([f"m{i}" for i in range(10)], holdout=0.2, seed=0)
    >>> len(s.train), len(s.heldout), s.train.isdisjoint(s.heldout)
    (8, 2, True)
    """

    train: frozenset[str]
    heldout: frozenset[str]


def split_merchants(merchant_ids: Iterable[str], holdout: float = 0.2, seed: int = 0) -> MerchantSplit:
    """Hold out a ``holdout`` share of merchants, chosen by a seeded permutation of the sorted ids."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    ids = np.array(sorted(set(merchant_ids)), dtype=object)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 merchants to hold some out, got {len(ids)}")
    perm = np.random.default_rng(seed).permutation(len(ids))
    n_out = max(1, round(len(ids) * holdout))
    return MerchantSplit(train=frozenset(ids[perm[n_out:]]), heldout=frozenset(ids[perm[:n_out]]))
