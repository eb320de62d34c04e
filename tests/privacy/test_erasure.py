"""Right to deletion: a merchant erased during live traffic is found nowhere afterwards.

The sweep searches every store for the merchant's raw id and its keyed hash: the decision log (every
table but the privacy audit trail, whose records hold the hash on purpose), the online store and the
cache (keys and values), the event stream and its dead letters, the served data folder's Parquet files,
the registered models' manifests and weights files (meta, prototypes) and the log files. It runs on the
embedded backends and on Redis + PostgreSQL.

The erasure rewrites the session's registered tiny model (it must: its manifest and prototypes name the
merchant), so these tests erase training merchants no other test uses: the last ones of the manifest.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.inference.persistence import load_profile_model
from aidg.privacy.ids import hash_id
from aidg.service import create_app
from tests.servers import REDIS_URL, private_servers

ADMIN, MM = "admin-key-erasure-test", "mm-key-erasure-test"


def _copy_data(trained: dict[str, Any], tmp: Path) -> Path:
    data = tmp / "world"
    shutil.copytree(trained["data"], data)
    return data


def _settings(trained: dict[str, Any], data: Path, db: str, **extra: Any) -> Settings:
    return Settings(
        home=Path(trained["settings"].home),
        database_url=db,
        api_keys={ADMIN: {"role": "admin"}, MM: {"role": "mm", "merchants": extra.pop("mm_merchants")}},
        service={"data": data, "inline_worker": True, "rate_limit_per_second": 10_000, "rate_limit_burst": 10_000},
        **extra,
    )


def _traffic(client: TestClient, merchants: list[str], stop: threading.Event, seen: dict[str, int]) -> None:
    """Generate and answer decisions for ``merchants`` until ``stop`` (the erased one is refused once gone)."""
    rng = random.Random(3)
    while not stop.is_set():
        m = rng.choice(merchants)
        r = client.post("/v1/deals/generate", json={"merchant_id": m}, headers={"x-api-key": ADMIN})
        seen[str(r.status_code)] = seen.get(str(r.status_code), 0) + 1
        if r.status_code != 200:
            continue
        d = r.json()["decision_id"]
        events = [{"event_id": uuid.uuid4().hex, "decision_id": d, "kind": "approval", "approved": rng.random() < 0.6}]
        client.post("/v1/feedback", json={"events": events}, headers={"x-api-key": ADMIN})


def _db_hits(url: str, needles: list[str], schema: str | None = None) -> dict[str, int]:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, schema=schema)
    hits: dict[str, int] = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            if table.name == "aidg_privacy_audit":
                continue  # the audit trail holds the hash on purpose (it is how training and replicas know)
            for row in conn.execute(sa.select(table)):
                text = " ".join(v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row)
                n = sum(text.count(x) for x in needles)
                if n:
                    hits[f"db/{table.name}"] = hits.get(f"db/{table.name}", 0) + n
    engine.dispose()
    return hits


def _file_hits(root: Path, needles: list[str], pattern: str = "*") -> dict[str, int]:
    hits: dict[str, int] = {}
    for p in root.rglob(pattern):
        if p.is_file():
            raw = p.read_bytes()
            n = sum(raw.count(x.encode()) for x in needles)
            if p.suffix == ".parquet":  # compressed columns: read them back too
                n += int(pd.read_parquet(p).astype(str).apply(lambda c: c.str.contains("|".join(needles))).sum().sum())
            if n:
                hits[str(p.relative_to(root))] = n
    return hits


def _sweep(client: TestClient, settings: Settings, data: Path, merchant: str, db_schema: str | None) -> dict[str, int]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    b = engine.backends
    needles = [merchant, hash_id(merchant, settings.privacy.id_hash_key)]
    url = settings.database_url or ""
    hits = _db_hits(url.split("?")[0] if db_schema else url, needles, db_schema)
    for name, store in (("online", b.online), ("cache", b.cache)):
        keys = store.scan("*")
        values = store.read(keys) if name == "online" else store.get_many(keys)
        n = sum(sum(k.count(x) for x in needles) for k in keys)
        n += sum(sum(v.count(x.encode()) for x in needles) for v in values if v)
        if n:
            hits[name] = n
    entries: list[dict[str, Any]] = []
    b.bus.erase(settings.stream.stream, lambda p: entries.append(p) or False)  # reads every entry, deletes none
    n = sum(str(e).count(x) for e in entries for x in needles)
    if n:
        hits["stream"] = n
    hits.update({f"data/{k}": v for k, v in _file_hits(data, needles).items()})
    home = settings.paths.home
    hits.update({f"registry/{k}": v for k, v in _file_hits(home / "mlartifacts", needles).items()})
    hits.update({f"logs/{k}": v for k, v in _file_hits(home / "logs", needles).items()})
    for path in (home / "mlartifacts").rglob("profile_model.pt"):
        protos = load_profile_model(path).artifacts.get("prototypes") or {}
        if merchant in str(protos):
            hits[f"prototypes/{path.parent.name}"] = 1
    return hits


def _erase_during_traffic(client: TestClient, settings: Settings, data: Path, merchant: str) -> dict[str, Any]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    others = [str(m) for m in engine.model.ctx.merchant_ids[5:9]]
    seen: dict[str, int] = {}
    stop = threading.Event()
    t = threading.Thread(target=_traffic, args=(client, [merchant, merchant, *others], stop, seen), daemon=True)
    t.start()
    try:
        end = time.monotonic() + 30
        while seen.get("200", 0) < 12 and time.monotonic() < end:
            time.sleep(0.1)
        assert engine.privacy.store.decision_ids(merchant), "the traffic logged no decision of the merchant"
        assert client.delete(f"/v1/merchants/{merchant}", headers={"x-api-key": MM}).status_code == 403
        r = client.delete(f"/v1/merchants/{merchant}", headers={"x-api-key": ADMIN})
        assert r.status_code == 200, r.text
        time.sleep(1.0)  # traffic goes on after the erasure
    finally:
        stop.set()
        t.join(10)
    report = dict(r.json())
    gone = client.post("/v1/deals/generate", json={"merchant_id": merchant}, headers={"x-api-key": ADMIN})
    assert gone.status_code == 404 and merchant not in gone.text
    assert client.delete(f"/v1/merchants/{merchant}", headers={"x-api-key": ADMIN}).status_code == 404
    report["traffic"] = seen
    return report


def test_erasure_during_live_traffic_leaves_no_trace_embedded(trained: dict[str, Any], tmp_path: Path) -> None:
    pm = load_profile_model(next((Path(trained["settings"].home) / "mlartifacts").rglob("profile_model.pt")))
    merchant = str(pm.meta["train_merchants"][-1])
    data = _copy_data(trained, tmp_path)
    settings = _settings(trained, data, f"sqlite:///{tmp_path / 'decisions.sqlite'}", mm_merchants=[merchant])
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        report = _erase_during_traffic(client, settings, data, merchant)
        print("erasure report:", report)
        assert report["erased"] == hash_id(merchant, settings.privacy.id_hash_key) and merchant not in str(report)
        removed = report["removed"]
        assert removed["decisions"] >= 1 and removed["offline/merchants"] == 1 and removed["offline/deals"] >= 1
        assert removed["manifests"] >= 1 and removed["model_files"] >= 1
        hits = _sweep(client, settings, data, merchant, None)
        assert hits == {}, f"the erased merchant is still in {hits}"
        audit = client.app.state.engine.privacy.store.audit_records("erasure")  # type: ignore[attr-defined]
        assert audit[0]["detail"]["phase"] == "done" and merchant not in str(audit)


@pytest.fixture()
def servers() -> Iterator[dict[str, str]]:
    with private_servers() as found:
        yield found


def test_erasure_during_live_traffic_leaves_no_trace_on_redis_and_postgresql(
    trained: dict[str, Any], tmp_path: Path, servers: dict[str, str]
) -> None:
    pm = load_profile_model(next((Path(trained["settings"].home) / "mlartifacts").rglob("profile_model.pt")))
    merchant = str(pm.meta["train_merchants"][-2])
    data = _copy_data(trained, tmp_path)
    settings = _settings(
        trained, data, servers["db"], mm_merchants=[merchant], redis_url=REDIS_URL, redis_namespace=servers["ns"],
        stream={"stream": servers["stream"]},
    )  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        report = _erase_during_traffic(client, settings, data, merchant)
        print("erasure report:", report)
        assert report["removed"]["decisions"] >= 1 and report["removed"].get("online_rows", 0) >= 1
        hits = _sweep(client, settings, data, merchant, servers["schema"])
        assert hits == {}, f"the erased merchant is still in {hits}"
