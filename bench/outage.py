"""A backend killed under load: the service keeps answering (degraded), loses no feedback and recovers by itself.

``--backend redis``: a private ``redis-server`` (never the shared one) holds the online store, the cache and
the event bus; the decision log is SQLite. ``--backend postgresql``: a private PostgreSQL cluster (``initdb``
in a temp folder, its own port; never the shared server) holds the decision log; the rest is in-process.
The API runs in this process under uvicorn on 127.0.0.1 with a stream worker inside, and a client sends
``generate`` at a steady rate, one approval per decision and one late conversion for an earlier decision
(so feedback keeps arriving while the decision log is down). After ``--warm`` seconds the server is stopped
(Redis: SIGTERM to its PID, and it comes back empty, the harder case; PostgreSQL: SIGINT to its
postmaster's PID, a "fast" shutdown as ``pg_ctl stop`` makes it, and it comes back with its data) for
``--outage`` seconds, started again, and the load goes on for ``--after`` seconds.

Figures (``--json``): ``requests``, ``outage_non5xx_ratio`` (responses below 500 over all),
``outage_degraded_ratio`` (generate answers flagged ``degraded`` among those sent and answered while the
server was down, before its restart began: a restarting server can answer before the drill sees it up),
``outage_not_degraded`` (the first few that were not, if any), ``recovery_s`` (server back → the first of 5
consecutive answers not degraded),
``readyz_named_it`` (``/readyz`` named the backend as down during the outage), ``feedback_accepted``,
``feedback_lost`` (accepted events not in the decision log at the end: the outbox republishes what the bus
lost, the spill replays what the decision log could not take), ``feedback_applied`` (of them, applied by the
stream worker within ``--settle`` seconds), ``outage_p50_ms``/``outage_p99_ms``.

    .venv/bin/python bench/outage.py --json                            # Redis, tiny world trained in a temp home
    .venv/bin/python bench/outage.py --backend postgresql --json       # PostgreSQL
    .venv/bin/python bench/outage.py --home H --data W --json          # a trained home and its world
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from service_proc import BenchError, emit, free_port, log  # noqa: E402

BACKENDS = ("redis", "postgresql")


class PrivateRedis:
    """A ``redis-server`` of our own on a free loopback port; only its PID is ever signalled."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        if shutil.which("redis-server") is None:
            raise BenchError("redis-server is not installed (apt-get install -y redis-server)")

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client.ping()
                client.close()
                return
            except Exception:
                time.sleep(0.05)
        raise BenchError(f"the private redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary (Debian keeps them under /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise BenchError(f"PostgreSQL's {name} is not installed (apt-get install -y postgresql)")
    return found


class PrivatePostgres:
    """A PostgreSQL cluster of our own (``initdb`` in a temp folder of its own, removed by ``close``) on a free
    loopback port; only the PID of its postmaster is ever signalled. As root it runs as the ``postgres`` user
    (the server refuses root), so its folder is not under another private temp folder."""

    def __init__(self) -> None:
        self.folder, self.port = Path(tempfile.mkdtemp(prefix="aidg-pg-")), free_port()
        self.pgdata = self.folder / "pgdata"
        self.pid: int | None = None
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise BenchError("running as root needs a `postgres` user for the private PostgreSQL") from None
            self._as = ["runuser", "-u", "postgres", "--"]
            self._uid, self._gid = user.pw_uid, user.pw_gid
        self._initdb, self._postgres = _pg_bin("initdb"), _pg_bin("postgres")

    def _own(self, path: Path) -> None:
        if self._as:
            os.chown(path, self._uid, self._gid)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._own(self.folder)
        if not self.pgdata.exists():
            subprocess.run([*self._as, self._initdb, "-D", str(self.pgdata), "-A", "trust", "-U", "aidg",
                            "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
        proc = subprocess.Popen(
            [*self._as, self._postgres, "-D", str(self.pgdata), "-p", str(self.port), "-k", str(self.folder),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "max_connections=50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pid_file = self.pgdata / "postmaster.pid"
            if proc.poll() is not None:
                raise BenchError(f"the private PostgreSQL exited with code {proc.returncode}")
            if pid_file.exists():
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        self.pid = int(pid_file.read_text().split()[0])
                        self._proc = proc
                        self._wait_accepting(deadline)
                        return
                except (OSError, ValueError, IndexError):
                    pass
            time.sleep(0.1)
        raise BenchError(f"the private PostgreSQL on port {self.port} did not start")

    def _wait_accepting(self, deadline: float) -> None:
        import psycopg

        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.dsn, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise BenchError(f"the private PostgreSQL on port {self.port} did not accept connections")

    def stop(self) -> None:
        if self.pid is not None:
            try:
                # SIGINT is PostgreSQL's "fast" shutdown (what `pg_ctl stop` does): sessions are ended at once;
                # SIGTERM ("smart") would wait for the service's pooled connections to close, i.e. forever
                os.kill(self.pid, signal.SIGINT)
                self._proc.wait(20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self._proc.wait(5)
        self.pid = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"postgresql://aidg@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://aidg@127.0.0.1:{self.port}/postgres"


@dataclass
class Answer:
    t: float
    status: int
    kind: str
    degraded: bool
    ms: float
    detail: str = ""  # generate: its type, decision id and reasons (what a non-degraded answer in an outage was)


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    decisions: list[str] = field(default_factory=list)


def _feedback(http: httpx.Client, load: Load, event: dict[str, Any]) -> None:
    t1 = time.monotonic()
    try:
        f = http.post("/v1/feedback", json=event)
        load.answers.append(Answer(t1, f.status_code, "feedback", bool(f.json().get("degraded")),
                                   (time.monotonic() - t1) * 1e3))  # fmt: skip
        if f.status_code == 200 and f.json().get("accepted") == 1:
            load.accepted.add(event["event_id"])
    except httpx.HTTPError:
        load.answers.append(Answer(t1, 599, "feedback", False, (time.monotonic() - t1) * 1e3))


def _drive(url: str, merchants: list[str], rate: float, stop: threading.Event, load: Load, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=10.0) as http:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = http.post("/v1/deals/generate", json={"merchant_id": rng.choice(merchants)})
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            except httpx.HTTPError:
                load.answers.append(Answer(t0, 599, "generate", False, (time.monotonic() - t0) * 1e3))
                continue
            chosen = (body.get("chosen") or {}).get("type")
            detail = f"{chosen} {body.get('decision_id')} {body.get('degraded_reasons')}"
            load.answers.append(Answer(t0, r.status_code, "generate", bool(body.get("degraded")),
                                       (time.monotonic() - t0) * 1e3, detail))  # fmt: skip
            if r.status_code == 200 and body.get("decision_id"):
                load.decisions.append(body["decision_id"])
                _feedback(http, load, {"event_id": uuid.uuid4().hex, "decision_id": body["decision_id"],
                                       "kind": "approval", "approved": rng.random() < 0.6})  # fmt: skip
            if load.decisions:  # a late conversion for an earlier decision: feedback goes on during any outage
                _feedback(http, load, {"event_id": uuid.uuid4().hex, "decision_id": rng.choice(load.decisions),
                                       "kind": "conversion", "value": round(rng.random() * 0.3, 4)})  # fmt: skip
            stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - t0)))


def _readyz(url: str, stop: threading.Event, seen: list[tuple[float, list[str]]]) -> None:
    """``/readyz`` twice a second: which backends it names as down."""
    with httpx.Client(base_url=url, timeout=10.0) as http:
        while not stop.wait(0.5):
            try:
                seen.append((time.monotonic(), sorted(http.get("/readyz").json().get("down", {}))))
            except (httpx.HTTPError, ValueError):
                seen.append((time.monotonic(), ["(no answer)"]))


def _events(engine: Any, ids: set[str]) -> tuple[set[str], set[str]]:
    """Of these event ids, those in the service's decision log, and those applied (read through its own store)."""
    status = engine.backends.decisions.event_status(sorted(ids))
    return set(status), {i for i, applied in status.items() if applied}


def run(home: Path, data: Path, *, backend: str = "redis", warm_s: float = 10, outage_s: float = 30,
        after_s: float = 40, rate: float = 20, settle_s: float = 90, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The outage drill (see the module docstring); returns the figures."""
    import uvicorn

    from aidg.config import Settings
    from aidg.service import create_app

    if backend not in BACKENDS:
        raise BenchError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    with tempfile.TemporaryDirectory(prefix="aidg-outage-") as tmp:
        server: PrivateRedis | PrivatePostgres
        if backend == "redis":
            server = PrivateRedis(Path(tmp) / "redis")
            server.start()
            urls = {"redis_url": server.url, "redis_namespace": f"aidg-outage-{uuid.uuid4().hex[:8]}",
                    "database_url": f"sqlite:///{Path(tmp) / 'decisions.sqlite'}"}  # fmt: skip
            down_name = "online_store"
        else:
            server = PrivatePostgres()
            server.start()
            urls = {"database_url": server.url}
            down_name = "decision_log"
        settings = Settings(home=home, **urls, service={"data": data, "inline_worker": True})
        app = create_app(settings)
        port = free_port()
        http_server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False))  # fmt: skip
        thread = threading.Thread(target=http_server.run, daemon=True)
        thread.start()
        load, stop, ready = Load(), threading.Event(), []
        try:
            deadline = time.monotonic() + 180
            while not http_server.started and time.monotonic() < deadline:
                time.sleep(0.1)
            if not http_server.started:
                raise BenchError("the service did not start within 180 s")
            engine = app.state.engine
            merchants = [str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m))]
            url = f"http://127.0.0.1:{port}"
            driver = threading.Thread(target=_drive, args=(url, merchants, rate, stop, load, seed), daemon=True)
            watcher = threading.Thread(target=_readyz, args=(url, stop, ready), daemon=True)
            driver.start()
            watcher.start()
            time.sleep(warm_s)
            log(f"stopping {backend} for {outage_s:g} s")
            server.stop()
            t_down = time.monotonic()
            time.sleep(outage_s)
            t_restart = time.monotonic()  # "during the outage": before the restart (the server may answer early)
            server.start()
            t_up = time.monotonic()
            log(f"{backend} is back" + (" (empty)" if backend == "redis" else ""))
            time.sleep(after_s)
            stop.set()
            driver.join(15)
            watcher.join(5)
            stored, applied = _events(engine, load.accepted)
            end = time.monotonic() + settle_s
            while not load.accepted <= applied and time.monotonic() < end:
                if engine.worker is not None:
                    engine.worker.republish()
                time.sleep(1.0)
                stored, applied = _events(engine, load.accepted)
        finally:
            stop.set()
            http_server.should_exit = True
            thread.join(20)
            server.close() if isinstance(server, PrivatePostgres) else server.stop()
    answers = load.answers
    during = [a for a in answers if a.kind == "generate" and t_down <= a.t and a.t + a.ms / 1e3 <= t_restart]
    after = sorted((a for a in answers if a.kind == "generate" and a.t >= t_up), key=lambda a: a.t)
    recovery = None
    for i in range(len(after) - 4):
        if all(a.status == 200 and not a.degraded for a in after[i : i + 5]):
            recovery = after[i].t - t_up
            break
    ms = sorted(a.ms for a in during) or [0.0]
    named = [down for t, down in ready if t_down + 2 <= t <= t_restart]
    return {
        "backend": backend,
        "requests": len(answers),
        "generate_requests": sum(a.kind == "generate" for a in answers),
        "outage_s": outage_s,
        "outage_non5xx_ratio": round(sum(a.status < 500 for a in answers) / max(len(answers), 1), 5),
        "status_counts": {str(s): sum(a.status == s for a in answers) for s in sorted({a.status for a in answers})},
        "outage_requests": len(during),
        "outage_degraded_ratio": round(sum(a.degraded for a in during) / max(len(during), 1), 5),
        "outage_not_degraded": [f"+{a.t - t_down:.2f} s: {a.status} {a.detail}" for a in during if not a.degraded][:5],
        "recovery_s": None if recovery is None else round(recovery, 3),
        "readyz_named_it": bool(named) and all(down_name in d for d in named),
        "outage_p50_ms": round(ms[len(ms) // 2], 2),
        "outage_p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "feedback_accepted": len(load.accepted),
        "feedback_lost": len(load.accepted - stored),
        "feedback_applied": len(load.accepted & applied),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=BACKENDS, default="redis")
    p.add_argument("--home", type=Path)
    p.add_argument("--data", type=Path)
    p.add_argument("--warm", type=float, default=10)
    p.add_argument("--outage", type=float, default=30)
    p.add_argument("--after", type=float, default=40)
    p.add_argument("--rate", type=float, default=20, help="generate requests per second")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="aidg-outage-home-") as tmp:
        from rollout import home_and_data

        home, data = home_and_data(a.home, a.data, Path(tmp))
        try:
            out = run(home, data, backend=a.backend, warm_s=a.warm, outage_s=a.outage, after_s=a.after, rate=a.rate)
        except BenchError as exc:
            raise SystemExit(f"error: {exc}") from None
    emit(out, a.json)


if __name__ == "__main__":
    main()
