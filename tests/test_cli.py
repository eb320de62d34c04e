"""The command line as a user runs it: real processes, JSON on stdout, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

AIDG = [sys.executable, "-m", "aidg.cli"]


def run(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIDG_HOME": str(home)}
    proc = subprocess.run([*AIDG, *args], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_simulate_json_reports_the_world(tmp_path: Path) -> None:
    out = tmp_path / "w"
    proc = run("simulate", "--scale", "small", "--seed", "7", "--out", str(out), "--json", home=tmp_path)
    report = json.loads(proc.stdout)
    for key in ("rows", "graph_nodes", "graph_edges", "distinct_best_discount_buckets", "personalization_gain"):
        assert key in report
    assert report["rows"]["merchants"] == 2000
    assert report["distinct_best_discount_buckets"] >= 5 and report["personalization_gain"] >= 0.25
    for table, n in report["rows"].items():
        assert len(pd.read_parquet(out / f"{table}.parquet")) == n
    assert run("validate", str(out), home=tmp_path).returncode == 0

    deals = pd.read_parquet(out / "deals.parquet")
    deals.loc[3, "discount_pct"] = 1.7
    deals.to_parquet(out / "deals.parquet")
    bad = run("validate", str(out), home=tmp_path, check=False)
    assert bad.returncode == 1
    assert "table 'deals', row 3, column 'discount_pct'" in bad.stderr
    as_json = json.loads(run("validate", str(out), "--json", home=tmp_path, check=False).stdout)
    assert as_json["ok"] is False and as_json["problems"][0]["row"] == 3


def test_user_mistakes_get_a_message_not_a_traceback(tmp_path: Path) -> None:
    bad_scale = run("simulate", "--scale", "huge", "--out", str(tmp_path / "x"), home=tmp_path, check=False)
    assert bad_scale.returncode == 2 and "unknown scale 'huge'" in bad_scale.stderr
    assert "Traceback" not in bad_scale.stderr
    empty = run("validate", str(tmp_path), home=tmp_path, check=False)
    assert empty.returncode != 0 and "no table files" in empty.stderr and "Traceback" not in empty.stderr
    env_bad = subprocess.run(
        [*AIDG, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AIDG_HOME": str(tmp_path), "AIDG_BANDIT__RISK_THRESHOLD": "2"},
    )
    assert env_bad.returncode == 2 and "AIDG_BANDIT__RISK_THRESHOLD" in env_bad.stderr
    assert "Traceback" not in env_bad.stderr


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_demo_writes_only_under_its_home(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    report = json.loads(run("demo", "--skip-training", "--json", home=a).stdout)
    assert report["personalization_gain"] >= 0.25 and len(report["examples"]) == 5
    assert all(Path(p).exists() and a in Path(p).parents for p in report["plots"])
    assert Path(report["out"]).is_relative_to(a)
    assert not b.exists()
    human = run("demo", "--skip-training", home=b).stdout
    assert "Does personalization matter here?" in human and "oracle-best deal" in human
    assert sorted(p.name for p in a.iterdir()) == ["demo"]


def test_config_json_shows_effective_settings(tmp_path: Path) -> None:
    env = {**os.environ, "AIDG_HOME": str(tmp_path), "AIDG_EXPLORATION__INITIAL_RATE": "0.1"}
    proc = subprocess.run([*AIDG, "config", "--json"], capture_output=True, text=True, env=env, timeout=60)
    data = json.loads(proc.stdout)
    assert data["exploration"]["initial_rate"] == 0.1 and data["home"] == str(tmp_path)


def test_train_and_evaluate_explain_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "w"
    train = invoke(["train", "--data", str(empty)], tmp_path, monkeypatch)
    sim = invoke(["simulate", "--scale", "tiny", "--out", str(out)], tmp_path, monkeypatch)
    assert train.exit_code == 2 and "missing table(s)" in train.stderr and "Traceback" not in train.stderr
    assert sim.exit_code == 0, sim.stderr
    ev = invoke(["evaluate", "--data", str(out)], tmp_path / "fresh", monkeypatch)
    assert ev.exit_code == 2 and "aidg train" in ev.stderr and "Traceback" not in ev.stderr


def invoke(args: list[str], home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """One command in this process (no interpreter start-up: these refuse before doing anything), stderr apart."""
    from typer.testing import CliRunner

    from aidg.cli import app

    monkeypatch.setenv("AIDG_HOME", str(home))
    return CliRunner().invoke(app, args)


def test_serve_and_stream_worker_refuse_what_they_cannot_do_safely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AIDG_API_KEYS", "AIDG_REDIS_URL", "AIDG_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    open_bind, no_model, no_data, worker, join = (invoke(c, tmp_path, monkeypatch) for c in (
        ["serve", "--host", "0.0.0.0"], ["serve", "--data", str(tmp_path)],
        ["serve", "--data", str(tmp_path / "nowhere")], ["stream-worker"],
        ["serve", "--join"],  # a replica that would share nothing
    ))  # fmt: skip
    assert open_bind.exit_code == 2 and "AIDG_API_KEYS" in open_bind.stderr and "127.0.0.1" in open_bind.stderr
    assert no_model.exit_code == 2 and "aidg train" in no_model.stderr and "Traceback" not in no_model.stderr
    assert no_data.exit_code == 2 and "no data folder" in no_data.stderr
    assert worker.exit_code == 2 and "AIDG_REDIS_URL" in worker.stderr
    assert join.exit_code == 2 and "AIDG_REDIS_URL" in join.stderr and "Traceback" not in join.stderr
