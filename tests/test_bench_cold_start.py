"""bench/cold_start.py: a clear refusal without a trained home (its figures come from real starts, see README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benches import load_bench


def test_cold_start_refuses_a_home_that_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_bench("cold_start.py")
    assert bench.main(["--home", str(tmp_path / "nowhere"), "--data", str(tmp_path)]) == 2
    assert "must be a trained home and its data folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--home", str(tmp_path), "--data", str(tmp_path), "--runs", "0"])
