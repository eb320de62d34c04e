"""``aidg score-all``: every merchant's variants in Parquet, equal to the service's answers for the same version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aidg.cli import app as cli
from aidg.config import Settings
from aidg.errors import DataError
from aidg.online.score_all import score_all
from aidg.service import create_app


def test_every_merchants_variants_match_the_services_answers(trained: dict[str, Any], tmp_path: Path) -> None:
    s = Settings(home=Path(trained["settings"].home), service={"data": trained["data"]},
                 database_url=f"sqlite:///{tmp_path / 'decisions.sqlite'}")  # fmt: skip
    out = tmp_path / "scores.parquet"
    report = score_all(s, trained["data"], out, chunk=40)
    frame = pd.read_parquet(out)
    merchants = frame.merchant_id.unique()
    n = s.bandit.n_candidates
    assert report["rows"] == len(frame) == len(merchants) * (n + 1) and report["candidates_per_s"] > 0
    assert report["merchants"] == len(merchants) == len(trained["world"].tables["merchants"])
    assert (frame.groupby("merchant_id").variant.nunique() == n + 1).all()  # n distinct variants and the current deal
    assert np.isfinite(frame[["score", "risk", "uplift", "approval", "conversion"]].to_numpy()).all()
    meta = pq.read_schema(out).metadata
    assert meta[b"aidg.model_version"].decode() == report["model_version"]
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        engine = c.app.state.engine  # type: ignore[attr-defined]
        served = [m for m in merchants if engine.privacy.personalized(str(m))][:4]
        for m in served:
            r = c.post("/v1/deals/generate", json={"merchant_id": m})
            assert r.status_code == 200, r.text
            mine = frame[frame.merchant_id == m].set_index("variant")
            for v in r.json()["variants"]:
                row = mine.loc[v["variant"]]
                assert (row.discount_pct, row.price, row.duration_days) == pytest.approx(
                    (v["discount_pct"], v["price"], v["duration_days"]), abs=1e-9)
                assert row.score == pytest.approx(v["score"], abs=1e-4) and row.type == v["type"]
            assert mine.loc[-1].score == pytest.approx(r.json()["current"]["score"], abs=1e-4)


def test_bad_requests_say_what_to_fix(trained: dict[str, Any], tmp_path: Path) -> None:
    s = Settings(home=Path(trained["settings"].home))
    with pytest.raises(DataError, match="Parquet file"):
        score_all(s, trained["data"], tmp_path / "scores.csv")
    with pytest.raises(DataError, match="unknown merchant"):
        score_all(s, trained["data"], tmp_path / "s.parquet", merchants=["m-999999"])
    assert not (tmp_path / "s.parquet").exists()
    res = CliRunner().invoke(cli, ["score-all", "--data", str(trained["data"]), "--out", str(tmp_path / "x.parquet"),
                                   "--variants", "0"])  # fmt: skip
    assert res.exit_code == 2 and "--variants" in res.stderr
