"""Encryption at rest (DESIGN §8): the offline store, the truth, the model file, its manifest and the serving
snapshot cache are encrypted with the settings' key; without one every file is written exactly as before."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aidg.config import PrivacySettings, Settings
from aidg.errors import ConfigError
from aidg.privacy.crypto import ENV, MAGIC, Cipher, is_encrypted, new_key
from aidg.sim import World
from aidg.sim.storage import load_world, save_world
from aidg.sim.world import TRUTH_DIR
from aidg.store import OfflineStore

MERCHANT_ID = re.compile(rb"m-\d{6}")  # the simulator's merchant ids (m-000000)
AIDG = [sys.executable, "-m", "aidg.cli"]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _keyed(home: Path, key: str) -> Settings:
    return Settings(home=home, privacy=PrivacySettings(encryption_key=key))


@pytest.fixture()
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def test_bytes_round_trip_header_and_rotation(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    c = Cipher([old])
    secret = b"m-000042 likes 20 % off"
    blob = c.encrypt_bytes(secret)
    assert blob.startswith(MAGIC) and is_encrypted(blob) and b"m-000042" not in blob
    assert c.decrypt_bytes(blob) == secret
    assert c.encrypt_bytes(secret) != blob  # a fresh IV each time
    plain = Cipher.plain()
    assert not plain.enabled and plain.encrypt_bytes(secret) == secret and plain.decrypt_bytes(secret) == secret
    assert c.decrypt_bytes(b"PAR1 a plain file") == b"PAR1 a plain file"  # written before the key was set
    assert old not in repr(c)
    # rotation: "new,old" reads both; rotate_tree rewrites old files with the new key, then "new" alone reads them
    c.write_bytes(tmp_path / "a" / "x.bin", secret)
    (tmp_path / "a" / "plain.txt").write_bytes(b"plain")
    both = Cipher.from_settings(_keyed(tmp_path, f"{new}, {old}"))
    assert both.n_keys == 2 and both.read_bytes(tmp_path / "a" / "x.bin") == secret
    with pytest.raises(ConfigError):
        Cipher([new]).read_bytes(tmp_path / "a" / "x.bin")
    assert both.rotate_tree([tmp_path / "a"]) == 1
    assert Cipher([new]).read_bytes(tmp_path / "a" / "x.bin") == secret
    assert (tmp_path / "a" / "plain.txt").read_bytes() == b"plain"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["plain.txt", "x.bin"]  # no temporary left


def test_a_bad_key_setting_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{ENV}.*aidg config --new-key"):
        Cipher.from_settings(_keyed(tmp_path, "not-a-key"))
    with pytest.raises(ConfigError, match="key 2 of 2"):
        Cipher([new_key(), "short"])
    assert not Cipher.from_settings(_keyed(tmp_path, " ")).enabled


def test_an_encrypted_world_hides_merchant_ids_and_loads_back_equal(tiny_world: World, tmp_path: Path) -> None:
    cipher = Cipher([new_key()])
    store = save_world(tiny_world, tmp_path / "w", cipher)
    files = _files(tmp_path / "w")
    assert {p.relative_to(tmp_path / "w").as_posix() for p in files} >= {
        "merchants.parquet", "deals.parquet", f"{TRUTH_DIR}/merchants.parquet", f"{TRUTH_DIR}/world.json"
    }  # fmt: skip
    for p in files:
        raw = p.read_bytes()
        assert raw.startswith(MAGIC), p
        assert MERCHANT_ID.search(raw) is None, p
    assert all(store.encrypted(t) for t in store.tables())
    back = load_world(tmp_path / "w", cipher)
    plain_dir = tmp_path / "plain"
    save_world(tiny_world, plain_dir, Cipher.plain())
    reference = load_world(plain_dir, Cipher.plain())
    assert MERCHANT_ID.search((plain_dir / "merchants.parquet").read_bytes())  # the check above can fail
    assert back.meta == reference.meta
    assert set(back.tables) == set(reference.tables) and set(back.truth) == set(reference.truth)
    for name, df in reference.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], df)
    for name, df in reference.truth.items():
        pd.testing.assert_frame_equal(back.truth[name], df)
    # SQL: encrypted tables are decrypted into memory and registered under their names
    sql = "SELECT m.category_id, count(*) AS n FROM deals d JOIN merchants m USING (merchant_id) GROUP BY 1 ORDER BY 1"
    pd.testing.assert_frame_equal(store.query(sql), OfflineStore(plain_dir, Cipher.plain()).query(sql))


def test_missing_or_wrong_key_is_a_config_error_that_says_the_fix(
    tiny_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_key()
    save_world(tiny_world, tmp_path / "w", Cipher([key]))
    for cipher, why in ((Cipher.plain(), "no key is set"), (Cipher([new_key()]), "cannot be decrypted")):
        with pytest.raises(ConfigError, match=f"{why}.*set {ENV} to the key that wrote it"):
            load_world(tmp_path / "w", cipher)
        with pytest.raises(ConfigError, match=why):
            OfflineStore(tmp_path / "w", cipher).query("SELECT 1 FROM merchants")
    # no cipher given: the key of the environment's settings
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError, match="no key is set"):
        load_world(tmp_path / "w")
    monkeypatch.setenv(ENV, key)
    assert len(load_world(tmp_path / "w").tables["merchants"]) == 150
    save_world(tiny_world, tmp_path / "env")
    assert all(p.read_bytes().startswith(MAGIC) for p in _files(tmp_path / "env"))


def test_without_a_key_files_are_written_as_before(tiny_world: World, tmp_path: Path, no_key: None) -> None:
    save_world(tiny_world, tmp_path / "w")  # the environment has no key
    ref = tmp_path / "ref"
    (ref / TRUTH_DIR).mkdir(parents=True)
    for name, df in tiny_world.tables.items():
        df.to_parquet(ref / f"{name}.parquet", index=False)
    for name, df in tiny_world.truth.items():
        df.to_parquet(ref / TRUTH_DIR / f"{name}.parquet", index=False)
    (ref / TRUTH_DIR / "world.json").write_text(json.dumps(tiny_world.meta, indent=2, default=str))
    written = {p.relative_to(tmp_path / "w"): p.read_bytes() for p in _files(tmp_path / "w")}
    expected = {p.relative_to(ref): p.read_bytes() for p in _files(ref)}
    assert written == expected  # byte for byte
    assert not OfflineStore(tmp_path / "w").encrypted("merchants")
    assert int(OfflineStore(tmp_path / "w").query("SELECT count(*) AS n FROM merchants").n[0]) == 150


def test_cli_new_key_simulate_and_validate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != ENV} | {"AIDG_HOME": str(tmp_path)}
    proc = subprocess.run([*AIDG, "config", "--new-key"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip()
    assert Cipher([key]).enabled
    keyed = env | {ENV: key}
    shown = subprocess.run([*AIDG, "config", "--json"], capture_output=True, text=True, env=keyed, timeout=120)
    assert json.loads(shown.stdout)["privacy"]["encryption_key"] == "***" and key not in shown.stdout
    out = tmp_path / "w"
    sim = subprocess.run([*AIDG, "simulate", "--scale", "tiny", "--out", str(out), "--json"],
                         capture_output=True, text=True, env=keyed, timeout=300)  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    assert all(p.read_bytes().startswith(MAGIC) for p in _files(out))
    ok = subprocess.run([*AIDG, "validate", str(out), "--json"], capture_output=True, text=True, env=keyed, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stderr
    bad = subprocess.run([*AIDG, "validate", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and f"set {ENV} to the key that wrote it" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad_key = subprocess.run([*AIDG, "config"], capture_output=True, text=True, env=env | {ENV: "nope"}, timeout=120)
    assert bad_key.returncode == 2 and ENV in bad_key.stderr and "Traceback" not in bad_key.stderr


def test_model_file_manifest_and_snapshot_cache_are_encrypted(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aidg.online import serving_model as service_model
    from aidg.online import serving_package
    from aidg.registry import ModelRegistry

    key = new_key()
    settings = _keyed(tmp_path / "home", key)
    pm = ModelRegistry(trained["settings"]).load_profile(trained["report"]["version"])
    # the version's own precomputed serving inputs live in its (encrypted) weights file; without them the service
    # computes the snapshot and keeps it in the serving package under AIDG_HOME/cache, which this test checks
    pm.artifacts.pop(service_model.SERVING_ARTIFACT, None)
    registry = ModelRegistry(settings)
    version = registry.register_profile(pm, {"data": str(trained["data"]), "as_of": pm.meta["as_of"]}, {})
    weights = registry.weights_path(version)
    raw = weights.read_bytes()
    assert raw.startswith(MAGIC) and MERCHANT_ID.search(raw) is None
    assert MERCHANT_ID.search(ModelRegistry(trained["settings"]).weights_path().read_bytes())  # plain: ids in it
    manifests = list((tmp_path / "home" / "mlartifacts").rglob("manifest.json"))
    assert manifests
    for m in manifests:
        data = json.loads(m.read_text())
        assert MERCHANT_ID.search(m.read_bytes()) is None
        assert data["train_merchants_count"] == len(pm.meta["train_merchants"]) and data["as_of"] == pm.meta["as_of"]
    back = registry.load_profile(version)
    assert back.meta["train_merchants"] == pm.meta["train_merchants"]
    with pytest.raises(ConfigError, match=f"set {ENV} to the key that wrote it"):
        ModelRegistry(Settings(home=tmp_path / "home")).load_profile(version)

    # the serving package (every merchant's scorer inputs, the merchants table) under AIDG_HOME/cache
    served = service_model.ServingModel(settings, trained["data"], version)
    caches = list(settings.paths.cache.glob("serving-v*.bin"))
    assert len(caches) == 1
    blob = caches[0].read_bytes()
    assert blob.startswith(MAGIC) and MERCHANT_ID.search(blob) is None

    def no_recompute(*a: object, **k: object) -> None:
        raise AssertionError("the encrypted serving package was not read back")

    monkeypatch.setattr(serving_package, "build_package", no_recompute)
    again = service_model.ServingModel(settings, trained["data"], version)
    assert (again.snap.profile == served.snap.profile).all()
    assert again.fingerprint == served.fingerprint
    # a key rotation: "new,old" reads everything, rotate_tree re-encrypts it with the new key, then "new" alone
    # serves the same version from the same cache, with the same fingerprint (hence the same bandit posterior)
    new = new_key()
    assert Cipher.from_settings(_keyed(tmp_path / "home", f"{new},{key}")).rotate_tree([tmp_path / "home"]) >= 2
    rotated = service_model.ServingModel(_keyed(tmp_path / "home", new), trained["data"], version)
    assert rotated.fingerprint == served.fingerprint and (rotated.snap.profile == served.snap.profile).all()
    with pytest.raises(ConfigError):
        Cipher([key]).read_bytes(weights)
