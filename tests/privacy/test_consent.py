"""Consent: without personalization the service runs no model on the merchant; without training it is left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.decisionlog.log import DecisionLog
from aidg.decisionlog.privacy import PrivacyStore
from aidg.privacy.consent import consent_flags
from aidg.privacy.ids import hash_id
from aidg.service import create_app
from aidg.training.data import training_exclusions, without_excluded

ADMIN, MM, OTHER = "admin-consent", "mm-consent", "mm-other-consent"


@pytest.fixture(scope="module")
def client(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("consent")
    m = trained["world"].tables["merchants"]
    ids = [str(x) for x in m.merchant_id[m.consent_personalization.astype(bool) & m.consent_training.astype(bool)][:3]]
    refused = [str(x) for x in m.merchant_id[~m.consent_personalization.astype(bool)]]
    settings = Settings(
        home=Path(trained["settings"].home),
        database_url=f"sqlite:///{tmp / 'd.sqlite'}",
        service={"data": trained["data"]},
        api_keys={ADMIN: {"role": "admin"}, MM: {"role": "mm", "merchants": ids[:1]},
                  OTHER: {"role": "mm", "merchants": ids[1:2]}},
    )  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.mid, c.refused = ids[0], refused  # type: ignore[attr-defined]
        yield c


def _mid(client: TestClient) -> str:
    return str(client.mid)  # type: ignore[attr-defined]


def test_the_merchants_table_flag_is_respected_without_any_api_call(client: TestClient) -> None:
    assert client.refused, "the tiny world has merchants without personalization consent"  # type: ignore[attr-defined]
    mid = client.refused[0]  # type: ignore[attr-defined]
    out = client.post("/v1/deals/generate", json={"merchant_id": mid}, headers={"x-api-key": ADMIN}).json()
    assert out["personalized"] is False and out["variants"] == []
    got = client.get(f"/v1/merchants/{mid}/consent", headers={"x-api-key": ADMIN}).json()
    assert got["personalization"] is False and got["source"] == "merchants table"


def test_without_personalization_consent_generate_runs_no_model_and_says_so(client: TestClient) -> None:
    mid, key = _mid(client), {"x-api-key": MM}
    engine = client.app.state.engine  # type: ignore[attr-defined]
    first = client.post("/v1/deals/generate", json={"merchant_id": mid}, headers=key).json()
    assert first["personalized"] is True and len(first["variants"]) == 50
    r = client.put(f"/v1/merchants/{mid}/consent", json={"personalization": False}, headers=key)
    assert r.status_code == 200 and r.json() == {"merchant_id": mid, "personalization": False, "training": True,
                                                 "source": "api"}  # fmt: skip
    decisions = engine.counters["decisions"]
    out = client.post("/v1/deals/generate", json={"merchant_id": mid}, headers=key).json()
    assert out["personalized"] is False and "not consented" in out["why_not_personalized"]
    assert out["decision_id"] is None and out["variants"] == [] and out["chosen"]["type"] == "current"
    assert out["chosen"]["score"] is None and out["chosen"]["top_features"] == []
    # the current system's deal, exactly the one the personalized answer offered as its baseline
    assert engine.counters["decisions"] == decisions  # nothing logged, nothing learned
    # another replica (or this one after a restart) reads the flag from the decision log
    assert engine.privacy.store.consent([mid]) == {mid: (False, True)}
    assert client.put(f"/v1/merchants/{mid}/consent", json={"personalization": True}, headers=key).status_code == 200
    assert client.post("/v1/deals/generate", json={"merchant_id": mid}, headers=key).json()["personalized"] is True


def test_consent_endpoints_check_the_key_and_the_body(client: TestClient) -> None:
    mid = _mid(client)
    assert client.get(f"/v1/merchants/{mid}/consent", headers={"x-api-key": OTHER}).status_code == 403
    assert (
        client.put(f"/v1/merchants/{mid}/consent", json={"training": False}, headers={"x-api-key": OTHER}).status_code
        == 403
    )
    assert client.get(f"/v1/merchants/{mid}/consent").status_code == 401
    bad = client.put(f"/v1/merchants/{mid}/consent", json={"personalisation": False}, headers={"x-api-key": MM})
    assert bad.status_code == 422 and "personalisation" in bad.text
    assert client.get("/v1/merchants/nobody/consent", headers={"x-api-key": ADMIN}).status_code == 404
    got = client.get(f"/v1/merchants/{mid}/consent", headers={"x-api-key": ADMIN}).json()
    assert set(got) == {"merchant_id", "personalization", "training", "source"}


def test_training_leaves_out_merchants_without_training_consent_or_erased(tmp_path: Path, tiny_world) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(home=tmp_path / "home")
    merchants = tiny_world.tables["merchants"]
    table_refused = set(merchants.merchant_id[~merchants.consent_training.astype(bool)])
    a, b = (str(m) for m in merchants.merchant_id[merchants.consent_training.astype(bool)][:2])
    settings.paths.home.mkdir(parents=True)
    log = DecisionLog(f"sqlite:///{settings.paths.decisions_db}")
    store = PrivacyStore(log)
    store.set_consent(a, True, False)  # withdrawn through the API
    store.audit("erasure", hash_id(b, settings.privacy.id_hash_key), "test", {"phase": "done"})
    log.close()
    excluded = set(training_exclusions(settings, merchants))
    assert excluded == table_refused | {a, b}
    tables, n = without_excluded(settings, dict(tiny_world.tables))
    assert n == len(excluded) and not tables["deals"].merchant_id.isin(excluded).any()
    flags = consent_flags(pd.DataFrame({"merchant_id": ["x", "y"], "consent_training": [None, False]}))
    assert flags.training.to_dict() == {"x": True, "y": False} and flags.personalization.all()
