"""Training on two processes (DistributedDataParallel over gloo, started by torchrun through ``aidg train
--nproc 2``) gives the one-process result within seed noise, and only rank 0 registers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aidg.config import Settings
from aidg.registry import ModelRegistry

# On the tiny world, seeds 0, 1 and 2 of one process differ by 0.17 to 0.34 in the scorer's validation loss, 0.02 to
# 0.03 in its held-out approval AUC and 0.01 to 0.05 in its uplift error; two processes moved them by 0.0007,
# 0.002 and 0.001 (same seed). The bounds below are a tenth of the seed spread or less.
WITHIN = {"scorer_validation_loss": 0.02, "scorer_approval_auc": 0.01, "scorer_uplift_mae": 0.005,
          "scorer_final_loss": 0.02}  # fmt: skip


def test_two_processes_train_what_one_does_and_rank_0_registers(trained: dict[str, Any], tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "AIDG_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "aidg.cli", "train", "--data", str(trained["data"]), "--scale", "tiny", "--seed",
           "0", "--nproc", "2", "--json"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)  # rank 0's report alone on stdout
    assert report["nproc"] == 2 and report["version"] == "1"
    assert ModelRegistry(Settings(home=home)).versions() == ["1"]  # one version: rank 1 registered nothing
    one = trained["report"]["metrics"]
    assert report["metrics"]["scorer_epochs_run"] == one["scorer_epochs_run"]  # the same early-stopping epoch
    for key, bound in WITHIN.items():
        assert report["metrics"][key] == pytest.approx(one[key], abs=bound), key


def test_differential_privacy_refuses_several_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli import invoke

    r = invoke(["train", "--data", str(tmp_path), "--dp", "--nproc", "2"], tmp_path, monkeypatch)
    assert r.exit_code == 2 and "--nproc" in r.stderr and "Traceback" not in r.stderr
