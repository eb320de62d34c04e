"""The real servers CI provides answer their own protocols, and a missing one fails under CI."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.servers import require_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_answers_ping() -> None:
    require_server("Redis", "127.0.0.1", 6379)
    with socket.create_connection(("127.0.0.1", 6379), timeout=2) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert s.recv(64).startswith(b"+PONG")


def test_postgres_speaks_its_protocol() -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    with socket.create_connection(("127.0.0.1", 5432), timeout=2) as s:
        s.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest: the server answers 'S' or 'N'
        assert s.recv(1) in (b"S", b"N")


def test_missing_server_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not reachable"):
        require_server("nothing", "127.0.0.1", _free_port(), timeout=0.2)


def test_missing_server_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_server("nothing", "127.0.0.1", _free_port(), timeout=0.2)
