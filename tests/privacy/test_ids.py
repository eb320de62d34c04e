"""Merchant ids in logs only as keyed hashes: in messages, arguments, exceptions and the demo's own run."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from aidg.config import Settings
from aidg.privacy.ids import RedactIds, hash_id, install

RAW = re.compile(r"m-\d{6}")


def test_the_hash_is_keyed_stable_and_short() -> None:
    a = hash_id("m-000123", "k1")
    assert a == hash_id("m-000123", "k1") and a != hash_id("m-000123", "k2") and a != hash_id("m-000124", "k1")
    assert re.fullmatch(r"mh-[0-9a-f]{16}", a)


def test_every_part_of_a_record_is_redacted(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "aidg.log"
    install("secret", log_file=log_file)
    lg = logging.getLogger("aidg.test_ids")
    lg.warning("merchant %s failed on %s", "m-000123", ("GET", "/v1/merchants/m-000777/profile"))
    lg.info("dict args %(m)s", {"m": "m-000999"})
    try:
        raise KeyError("m-000042")
    except KeyError:
        lg.exception("scoring m-000042 failed")
    text = log_file.read_text()
    assert not RAW.search(text), text
    for mid in ("m-000123", "m-000777", "m-000999", "m-000042"):
        assert hash_id(mid, "secret") in text
    assert "KeyError" in text  # the traceback is kept, redacted
    # a pattern for another marketplace's ids
    r = RedactIds("secret", r"MER\d+")
    assert r.redact("shop MER42 and MER7") == f"shop {hash_id('MER42', 'secret')} and {hash_id('MER7', 'secret')}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_a_demo_run_logs_no_raw_merchant_id(
    trained: dict[str, Any], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from aidg.demo.serving import serve_demo

    home = Path(trained["settings"].home)
    settings = Settings(home=home, database_url=f"sqlite:///{tmp_path / 'd.sqlite'}")
    log_file = settings.paths.logs / "aidg.log"
    start = log_file.stat().st_size if log_file.exists() else 0
    out = serve_demo(settings, Path(trained["data"]), None, port=_free_port(), seconds=5, rate=20)
    logging.getLogger("aidg.service").warning("after the demo: merchant %s", "m-000002")  # must land redacted
    assert out["decisions"] >= 10
    logged = log_file.read_text()[start:]
    captured = capfd.readouterr()
    assert hash_id("m-000002", settings.privacy.id_hash_key) in logged
    assert not RAW.search(logged), RAW.findall(logged)[:5]
    assert not RAW.search(captured.err), RAW.findall(captured.err)[:5]
