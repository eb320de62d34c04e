"""The merchants whose data must not train (no training consent, or erased), and the tables without them."""

from __future__ import annotations

import pandas as pd

from aidg.config import Settings


def training_exclusions(settings: Settings, merchants: pd.DataFrame) -> list[str]:
    """Merchants whose data must not train: without training consent (the table's column or the API's), or erased
    (their keyed hash is in the decision log's audit trail, should a new data feed bring them back)."""
    from aidg.decisionlog.log import DecisionLog, decision_log_url
    from aidg.decisionlog.privacy import PrivacyStore
    from aidg.privacy.consent import consent_flags
    from aidg.privacy.ids import hash_id

    url = decision_log_url(settings)
    overrides: dict[str, tuple[bool, bool]] = {}
    erased: set[str] = set()
    if not url.startswith("sqlite") or settings.paths.decisions_db.exists():
        log = DecisionLog(url)
        try:
            store = PrivacyStore(log)
            overrides, erased = store.all_consent(), store.erased()
        finally:
            log.close()
    flags = consent_flags(merchants, overrides)
    key = settings.privacy.id_hash_key
    return sorted(str(m) for m, ok in flags.training.items() if not ok or hash_id(str(m), key) in erased)


def without_excluded(settings: Settings, tables: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], int]:
    """The tables without the merchants :func:`training_exclusions` names, and how many those are."""
    from aidg.privacy.consent import drop_merchants

    excluded = training_exclusions(settings, tables["merchants"])
    return drop_merchants(tables, excluded), len(excluded)


__all__ = ["training_exclusions", "without_excluded"]
