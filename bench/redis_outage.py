"""Redis killed under load: the service keeps answering (degraded), loses no feedback and recovers by itself.

A private ``redis-server`` (never the shared one) holds the online store, the cache and the event bus; the
decision log is SQLite. The API runs in this process under uvicorn on 127.0.0.1 with a stream worker
inside, and a client sends ``generate`` at a steady rate plus one approval per decision. After
``--warm`` seconds the Redis server is stopped (SIGTERM to its PID) for ``--outage`` seconds, then
started again empty (its data lost: the harder case), and the load goes on for ``--after`` seconds.

Figures (``--json``): ``requests``, ``redis_outage_non5xx_ratio`` (responses below 500 over all),
``redis_outage_degraded_ratio`` (generate answers flagged ``degraded`` among those sent and answered
while Redis was down), ``redis_recovery_s`` (Redis back → the first of 5 consecutive answers not
degraded), ``feedback_accepted``, ``feedback_lost`` (accepted events not in the decision log at the end),
``feedback_applied`` (of them, applied by the stream worker within ``--settle`` seconds: the outbox
republishes what the bus lost), ``p50_ms``/``p99_ms`` during the outage.

    .venv/bin/python bench/redis_outage.py --json                      # tiny world trained in a temp home
    .venv/bin/python bench/redis_outage.py --home H --data W --json    # a trained home and its world
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
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
from service_proc import BenchError, free_port, log  # noqa: E402


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


@dataclass
class Answer:
    t: float
    status: int
    kind: str
    degraded: bool
    ms: float


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)


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
            load.answers.append(Answer(t0, r.status_code, "generate", bool(body.get("degraded")),
                                       (time.monotonic() - t0) * 1e3))  # fmt: skip
            if r.status_code == 200 and body.get("decision_id"):
                ev = {"event_id": uuid.uuid4().hex, "decision_id": body["decision_id"], "kind": "approval",
                      "approved": rng.random() < 0.6}  # fmt: skip
                t1 = time.monotonic()
                try:
                    f = http.post("/v1/feedback", json=ev)
                    load.answers.append(Answer(t1, f.status_code, "feedback", bool(f.json().get("degraded")),
                                               (time.monotonic() - t1) * 1e3))  # fmt: skip
                    if f.status_code == 200 and f.json().get("accepted") == 1:
                        load.accepted.add(ev["event_id"])
                except httpx.HTTPError:
                    load.answers.append(Answer(t1, 599, "feedback", False, (time.monotonic() - t1) * 1e3))
            stop.wait(max(0.0, 1.0 / rate - (time.monotonic() - t0)))


def _events(db: Path) -> tuple[set[str], set[str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT event_id, applied_at FROM aidg_events").fetchall()
    return {r[0] for r in rows}, {r[0] for r in rows if r[1] is not None}


def run(home: Path, data: Path, *, warm_s: float = 10, outage_s: float = 30, after_s: float = 40, rate: float = 20,
        settle_s: float = 90, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """The outage drill (see the module docstring); returns the figures."""
    import uvicorn

    from aidg.config import Settings
    from aidg.service import create_app

    with tempfile.TemporaryDirectory(prefix="aidg-outage-") as tmp:
        redis_server = PrivateRedis(Path(tmp) / "redis")
        redis_server.start()
        db = Path(tmp) / "decisions.sqlite"
        settings = Settings(
            home=home, redis_url=redis_server.url, redis_namespace=f"aidg-outage-{uuid.uuid4().hex[:8]}",
            database_url=f"sqlite:///{db}", service={"data": data, "inline_worker": True},
        )  # fmt: skip
        app = create_app(settings)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        load, stop = Load(), threading.Event()
        try:
            deadline = time.monotonic() + 180
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.1)
            if not server.started:
                raise BenchError("the service did not start within 180 s")
            engine = app.state.engine
            merchants = [str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m))]
            driver = threading.Thread(target=_drive, args=(f"http://127.0.0.1:{port}", merchants, rate, stop, load,
                                                           seed), daemon=True)  # fmt: skip
            driver.start()
            time.sleep(warm_s)
            log(f"stopping Redis (pid {redis_server.proc.pid if redis_server.proc else '?'}) for {outage_s:g} s")
            redis_server.stop()
            t_down = time.monotonic()
            time.sleep(outage_s)
            redis_server.start()
            t_up = time.monotonic()
            log("Redis is back (empty)")
            time.sleep(after_s)
            stop.set()
            driver.join(15)
            stored, applied = _events(db)
            end = time.monotonic() + settle_s
            while not load.accepted <= applied and time.monotonic() < end:
                if engine.worker is not None:
                    engine.worker.republish()
                time.sleep(1.0)
                stored, applied = _events(db)
        finally:
            stop.set()
            server.should_exit = True
            thread.join(20)
            redis_server.stop()
    answers = load.answers
    during = [a for a in answers if a.kind == "generate" and t_down <= a.t and a.t + a.ms / 1e3 <= t_up]
    after = sorted((a for a in answers if a.kind == "generate" and a.t >= t_up), key=lambda a: a.t)
    recovery = None
    for i in range(len(after) - 4):
        if all(a.status == 200 and not a.degraded for a in after[i : i + 5]):
            recovery = after[i].t - t_up
            break
    ms = sorted(a.ms for a in during) or [0.0]
    return {
        "requests": len(answers),
        "generate_requests": sum(a.kind == "generate" for a in answers),
        "redis_outage_s": outage_s,
        "redis_outage_non5xx_ratio": round(sum(a.status < 500 for a in answers) / max(len(answers), 1), 5),
        "status_counts": {str(s): sum(a.status == s for a in answers) for s in sorted({a.status for a in answers})},
        "redis_outage_requests": len(during),
        "redis_outage_degraded_ratio": round(sum(a.degraded for a in during) / max(len(during), 1), 5),
        "redis_recovery_s": None if recovery is None else round(recovery, 3),
        "outage_p50_ms": round(ms[len(ms) // 2], 2),
        "outage_p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2),
        "feedback_accepted": len(load.accepted),
        "feedback_lost": len(load.accepted - stored),
        "feedback_applied": len(load.accepted & applied),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
            out = run(home, data, warm_s=a.warm, outage_s=a.outage, after_s=a.after, rate=a.rate)
        except BenchError as exc:
            raise SystemExit(f"error: {exc}") from None
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
