"""The demo's serving stage: the API on 127.0.0.1 with fresh keys and the simulated client's traffic."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from aidg.config import Settings
from aidg.demo.serving import serve_demo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_demo_serves_while_the_simulated_client_learns_through_the_stream(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    settings = Settings(home=trained["settings"].home, database_url=f"sqlite:///{tmp_path / 'd.sqlite'}")
    out = serve_demo(settings, Path(trained["data"]), None, port=_free_port(), seconds=6, rate=20)
    assert out["errors"] == 0 and out["decisions"] >= 20
    assert out["feedback_events"] >= 2 * out["decisions"]  # approval + override for each, conversion/GP30 if approved
    assert out["applied"] >= out["decisions"]  # the inline stream worker joined them to their decisions
    assert out["posterior_version"] >= 1
    assert 0 <= out["approval_rate"] <= 1


def test_demo_says_when_its_port_is_taken(trained: dict[str, Any]) -> None:
    from aidg.errors import DataError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(DataError, match="in use"):
            serve_demo(Settings(home=trained["settings"].home), Path(trained["data"]), None, port=s.getsockname()[1])
