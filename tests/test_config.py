from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from aidg.config import Settings, load_settings
from aidg.errors import ConfigError
from aidg.registry import ModelRegistry


def test_memo_defaults() -> None:
    s = Settings()
    assert (s.reward.w_gp30, s.reward.w_approval, s.reward.w_conversion, s.reward.w_risk) == (0.5, 0.3, 0.15, 0.05)
    assert s.bandit.risk_threshold == 0.1
    assert (s.guard.baseline_threshold, s.guard.max_override_rate) == (0.8, 0.3)
    assert {"gambling", "tobacco", "adult"} <= set(s.guard.high_risk_categories)
    e = s.exploration
    assert (e.initial_rate, e.min_rate, e.max_rate, e.ramp_up_factor, e.ramp_down_factor, e.success_threshold) == (
        0.05,
        0.01,
        0.3,
        1.5,
        0.5,
        0.8,
    )
    assert s.cache.ttl_seconds == 3600
    r = s.rollout
    assert (r.ab_personalization_share, r.ab_exploration_share, r.ramp_step) == (0.05, 0.10, 0.10)
    assert (r.rollback_gp30_drop, r.rollback_override_spike, r.rollback_error_rate) == (0.2, 0.3, 0.05)
    assert s.privacy.retention_days == 30 and s.privacy.dp_epsilon == 1.0
    # the training budgets per scale are settings (model sizes stay in each nn.Module's config)
    p = s.training.presets
    assert (p["tiny"].branch_epochs, p["small"].branch_epochs, p["full"].branch_epochs) == (2, 3, 2)
    assert (p["small"].graph_steps, p["full"].graph_steps, p["full"].graph_edges_per_step) == (None, 30, 65_536)
    assert (p["small"].scorer_batch_size, p["full"].scorer_batch_size, p["full"].scorer_windows) == (256, 512, 4)
    assert (p["small"].scorer_epochs, p["small"].scorer_windows, p["small"].sentiment_examples) == (30, 4, 3000)


def test_one_field_of_one_training_preset_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDG_TRAINING__PRESETS__SMALL__BRANCH_EPOCHS", "4")
    p = load_settings().training.presets
    assert p["small"].branch_epochs == 4 and p["small"].scorer_epochs == 30 and p["tiny"].branch_epochs == 2


def test_every_setting_is_documented() -> None:
    s = Settings()
    for group_name, group in s:
        if isinstance(group, BaseModel):
            for name, info in type(group).model_fields.items():
                assert info.description, f"{group_name}.{name} has no description"


def test_environment_overrides_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDG_BANDIT__RISK_THRESHOLD", "0.2")
    monkeypatch.setenv("AIDG_HOME", "/tmp/elsewhere")
    s = load_settings()
    assert s.bandit.risk_threshold == 0.2
    assert s.paths.registry_db == Path("/tmp/elsewhere/registry.sqlite")


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDG_EXPLORATION__INITIAL_RATE", "0.5")
    with pytest.raises(ConfigError, match=r"AIDG_EXPLORATION.*must lie in"):
        load_settings()


def test_out_of_range_and_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="AIDG_REWARD__W_GP30"):
        load_settings(reward={"w_gp30": -1})
    with pytest.raises(ConfigError, match="AIDG_ROLLOUT"):
        load_settings(rollout={"ab_personalization_share": 0.6, "ab_exploration_share": 0.6})
    with pytest.raises(ConfigError, match="AIDG_BANDIT__NOT_A_SETTING"):
        load_settings(bandit={"not_a_setting": 1})


def test_all_paths_live_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "a")
    p = s.paths
    for path in (p.models, p.registry_db, p.decisions_db, p.logs, p.cache, p.worlds):
        assert tmp_path / "a" in path.parents
    assert Settings(home=Path("~/x")).paths.home == Path("~/x").expanduser()


def test_a_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`AIDG_HOME=H aidg train` once failed at the very end: MLflow's artifact URI needs an absolute path."""
    monkeypatch.chdir(tmp_path)
    s = Settings(home=Path("h"))
    assert s.paths.home == tmp_path / "h"
    assert ModelRegistry(s).artifacts.as_uri().startswith("file://")


def test_constructing_settings_writes_nothing(tmp_path: Path) -> None:
    Settings(home=tmp_path / "h")
    assert not (tmp_path / "h").exists()


def test_each_backend_is_chosen_by_a_setting_and_needs_its_url() -> None:
    assert Settings().backend_kinds() == {"store": "embedded", "log": "embedded", "bus": "embedded"}
    urls = {"redis_url": "redis://127.0.0.1:6379/0", "database_url": "postgresql://u@127.0.0.1/test"}
    assert Settings(**urls).backend_kinds() == {"store": "redis", "log": "postgres", "bus": "redis"}  # auto
    chosen = Settings(**urls, backends={"store": "embedded", "bus": "embedded"}).backend_kinds()
    assert chosen == {"store": "embedded", "log": "postgres", "bus": "embedded"}  # a named kind wins over a URL
    with pytest.raises(ConfigError, match="AIDG_BACKENDS__LOG=postgres needs AIDG_DATABASE_URL"):
        load_settings(backends={"log": "postgres"})
    with pytest.raises(ConfigError, match="AIDG_BACKENDS__BUS=kafka needs AIDG_KAFKA_BOOTSTRAP"):
        load_settings(backends={"bus": "kafka"})


def test_a_backend_whose_extra_is_missing_fails_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from aidg.service.backends import make_backends

    monkeypatch.setitem(sys.modules, "redis", None)  # as if `pip install aidg` without the redis extra
    s = Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0", backends={"store": "redis", "bus": "embedded"})
    with pytest.raises(ConfigError, match=r"pip install 'aidg\[redis\]'"):
        make_backends(s)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    s = Settings(home=tmp_path, database_url="postgresql://u@127.0.0.1/test", backends={"log": "postgres"})
    with pytest.raises(ConfigError, match=r"'postgres' extra"):
        make_backends(s)
