"""Stream durability: feedback events through Redis Streams while stream workers are ``kill -9``-ed and Redis restarts.

After Kafka's own transactions test. The harness, all on 127.0.0.1 and in a temp folder:

* starts its OWN ``redis-server`` on a free port (``--appendonly yes --appendfsync always``: Redis 7.0 has no
  ``WAITAOF``, so every write is fsynced before Redis answers) with its own ``--dir``, and a decision log
  (SQLite in the temp folder, or a private PostgreSQL schema with ``--database postgresql``);
* produces feedback the way the service does (:meth:`aidg.service.engine.DealEngine.feedback`): decisions
  recorded, each batch of reward events stored first (``DecisionLog.receive``: durable, idempotent by event id,
  the outbox), then published to the stream; a publish that fails (Redis down) is left to the outbox. The four
  parts of a decision arrive spread over time (approval, then override, conversion, GP30 later);
* runs ``workers`` stream-worker processes in one consumer group: the real ``aidg stream-worker``
  (``entry="cli"``, the default), or this file's small entry point (:func:`worker_main`: the same
  ``StreamWorker`` with an in-process online store, a settable outbox cadence and injectable faults), started
  fresh (``"python"``) or forked from a process that imported it once (``"fork"``, :class:`Zygote`: a restart
  in milliseconds instead of seconds, for short tests with many kills);
* ``SIGKILL``-s one of them at random (seeded, a uniform delay after it is ready) ``kills`` times, restarting it
  at once (and restarting any that exits by itself, as a supervisor would), and ``SIGKILL``-s Redis once
  (when ``redis_restart_at`` of the events are produced; the producer waits there for it), keeps it down at
  least ``redis_down_s`` and until a publish has failed, and restarts it on its AOF;
* production is paced by the kills (never more than ``(k + 1) / (kills + 1)`` of the events before the k-th
  kill), so the stream is busy at every kill;
* at the end waits for the system to be quiet (every stored event applied, pending list and lag 0), stops
  its workers and Redis (by PID) and checks, from the decision log:

  - ``events_applied``: distinct event ids with ``applied_at`` set, against the produced ids (``events_missing``);
  - ``duplicate_applications``: how many times an event was applied beyond once, counted from the workers'
    own KPI rows (each application adds exactly 1 to the count of ``<arm>/<part>`` in the same transaction as
    the posterior update), plus applied ids seen twice;
  - the posterior against the bandit's own reference (:class:`~aidg.policy.bandit.RiskAwareThompsonSampling`
    fed every applied event once, as ``tests/stream/test_worker.py`` does): ``posterior_rel_error``; a
    double-applied (or lost-but-marked) reward moves it. ``events_double_counted`` is
    ``duplicate_applications``, or at least 1 when the posterior is off by more than 1e-6 (relative).

Run with ``nice``; it takes minutes at full size (each ``aidg stream-worker`` restart imports the service again,
~5-10 s; the CLI's outbox runs at start and every 60 s for events older than 30 s)::

    nice -n 10 .venv/bin/python bench/stream_durability.py --events 100000 --kills 50 --workers 2 --json

``--json`` prints one object on stdout (progress on stderr): ``events_produced``, ``events_applied``,
``events_double_counted``, ``worker_kills``, ``redis_restarts``, ``pending_after_s``, ``duplicate_applications``,
``seconds`` and the details (``events_unpublished``: stored while Redis was down, applied only through the
outbox; ``stream_entries_added``: every XADD, republished duplicates included; ``redis_kept_acked_writes``;
``worker_exits``: workers that exited by themselves, e.g. started while Redis was down, restarted like the killed
ones; ``dead_letters``; ...). The exit code is 0 when applied = produced, nothing was double counted and the
pending list emptied within 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
REDIS_SERVER = "/usr/bin/redis-server"
PG = "postgresql+psycopg://root@127.0.0.1:5432/test"
DIM = 33  # the bandit's context: intercept + 32 principal components
ARM = "bench"
MODEL_VERSION = "1"
GROUP = "aidg-workers"
T0 = datetime(2026, 3, 1, tzinfo=UTC)
PART_LAG = {"approval": 0, "override": 40, "conversion": 250, "gp30_uplift": 900}  # decisions between parts
READY = "AIDG-BENCH-WORKER-READY"
ZYGOTE_READY = "AIDG-BENCH-ZYGOTE-READY"
ENTRIES = ("cli", "python", "fork")
FAULTS = ("none", "ack_before_commit", "no_dedupe")


class BenchError(Exception):
    """A problem the user can fix (no redis-server, no PostgreSQL): one line, exit code 2."""


def log(msg: str) -> None:
    print(f"[bench/stream_durability] {msg}", file=sys.stderr, flush=True)


# --- the workload --------------------------------------------------------------------------------------------------


def _plan(events: int) -> list[tuple[int, str]]:
    """``(decision index, part)`` in production order: each decision's parts spread over later batches."""
    n = -(-events // 4)
    order = sorted(((d + PART_LAG[p], k, d, p) for d in range(n) for k, p in enumerate(PART_LAG)))
    return [(d, p) for _, _, d, p in order[:events]]


def _decision(i: int, rng: np.random.Generator) -> Any:
    from aidg.decisionlog.log import DecisionRecord

    phi = np.concatenate([[1.0], rng.normal(size=DIM - 1)])
    predicted = {"approval": 0.6, "conversion": 0.2, "gp30_uplift": 0.1, "override": 0.05}
    chosen = {"type": "explore" if i % 5 == 0 else "safe", "discount_pct": 10.0}
    payload = {"chosen": chosen, "current_margin": 0.2, "proxy_baseline": 1.0, "override_expected": 0.1}
    return DecisionRecord(f"d{i}", f"m{i % 997}", T0 + timedelta(seconds=i), MODEL_VERSION, ARM, {"variant": i % 50},
                          0.5, phi, float(rng.uniform(0, 0.5)), predicted, payload)  # fmt: skip


def _event(d: int, part: str, rng: np.random.Generator) -> Any:
    from aidg.decisionlog.log import RewardEvent

    if part == "approval":
        value = float(rng.integers(0, 2))
    elif part == "override":
        value = float(rng.uniform(0, 1)) if rng.random() < 0.3 else 0.0
    else:
        value = float(np.round(rng.uniform(0, 1), 4))
    at = T0 + timedelta(seconds=d, hours=1 + list(PART_LAG).index(part))
    return RewardEvent(f"e{d}-{part}", f"d{d}", part, value, at)


# --- processes we start (and stop, by PID) -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProc:
    """Our own redis-server: AOF with fsync on every write, its own folder and port; SIGKILL and restart."""

    def __init__(self, root: Path) -> None:
        if not Path(REDIS_SERVER).exists():
            raise BenchError(f"{REDIS_SERVER} is missing: apt-get install redis-server")
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        cmd = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
               "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
               "--logfile", str(self.dir / "redis.log")]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    if client.ping():  # answers only once the AOF is loaded (LOADING before)
                        return
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"redis-server did not start on port {self.port}; see {self.dir / 'redis.log'}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Zygote:
    """``entry="fork"``: one process that imported the worker's modules once and forks each worker from them.

    A restart takes milliseconds instead of the ~4 s of importing torch and the rest again, so the tests can
    kill often. The worker is still a process of its own, killed by ``SIGKILL``; the zygote sends it (only to
    its own unreaped children, so a PID is never reused under us) and reaps it. Its children die with it
    (``PR_SET_PDEATHSIG``), and it kills them when its stdin closes (the harness died).
    """

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        with log_path.open("wb") as err:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         text=True, bufsize=1)  # fmt: skip
        self.log_path = log_path
        if self._read(120.0) != ZYGOTE_READY:
            raise BenchError(f"the worker zygote did not start; see {log_path}")

    def _read(self, timeout: float) -> str:
        import select

        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise BenchError(f"the worker zygote did not answer in {timeout:.0f} s; see {self.log_path}")
        return self.proc.stdout.readline().strip()

    def ask(self, line: str, timeout: float = 30.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def spawn(self, consumer: str, log_path: Path) -> int:
        return int(self.ask(f"spawn {consumer} {log_path}").split()[1])

    def kill(self, pid: int) -> None:
        self.ask(f"kill {pid}")

    def alive(self) -> set[int]:
        return {int(p) for p in self.ask("poll").split()[1:]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BenchError, OSError):
                self.ask("term", timeout=60.0)
        if self.proc.poll() is None:
            self.proc.terminate()  # its children get SIGKILL from the kernel (PR_SET_PDEATHSIG)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@dataclass
class WorkerSlot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # a zygote's child
    log_path: Path | None = None
    started: float = 0.0
    spawns: int = 0


@dataclass
class Workers:
    """The stream-worker processes, each restarted at once when killed (or when it exits by itself)."""

    n: int
    root: Path
    env: dict[str, str]
    argv: list[str]
    marker: str
    zygote: Zygote | None = None
    slots: list[WorkerSlot] = field(default_factory=list)
    exits: int = 0
    _alive: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        (self.root / "workers").mkdir(parents=True, exist_ok=True)
        self.slots = [WorkerSlot(i) for i in range(self.n)]

    def spawn(self, slot: WorkerSlot) -> None:
        slot.spawns += 1
        slot.log_path = self.root / "workers" / f"w{slot.index}-{slot.spawns}.log"
        consumer = f"w{slot.index}-{slot.spawns}"
        if self.zygote is not None:
            slot.pid = self.zygote.spawn(consumer, slot.log_path)
            self._alive.add(slot.pid)
        else:
            argv = [a.replace("{consumer}", consumer) for a in self.argv]
            with slot.log_path.open("wb") as err:  # the child keeps its own handle
                slot.proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.DEVNULL, stderr=err,
                                             stdin=subprocess.DEVNULL)  # fmt: skip
        slot.started = time.monotonic()

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def ready(self, slot: WorkerSlot) -> bool:
        if slot.log_path is None or not slot.log_path.exists():  # a forked worker creates its own
            return False
        return self.marker in slot.log_path.read_text(errors="replace")

    def alive(self, slot: WorkerSlot) -> bool:
        if self.zygote is not None:
            return slot.pid is not None and slot.pid in self._alive
        return slot.proc is not None and slot.proc.poll() is None

    def revive(self) -> None:
        """Restart any worker that exited by itself (a supervisor's job)."""
        if self.zygote is not None:
            self._alive = self.zygote.alive()
        for slot in self.slots:
            if (slot.proc is not None or slot.pid is not None) and not self.alive(slot):
                self.exits += 1
                self.spawn(slot)

    def kill(self, slot: WorkerSlot) -> None:
        if self.zygote is not None:
            assert slot.pid is not None
            self.zygote.kill(slot.pid)  # SIGKILL, then reaped
            self._alive.discard(slot.pid)
        else:
            assert slot.proc is not None
            slot.proc.send_signal(signal.SIGKILL)  # only our child's PID
            slot.proc.wait(10)
        self.spawn(slot)

    def stop(self) -> None:
        if self.zygote is not None:
            self.zygote.stop()  # SIGTERM to its children, SIGKILL to those still there after 15 s
            return
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.terminate()
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(15)
            except subprocess.TimeoutExpired:
                slot.proc.kill()
                slot.proc.wait(10)

    def tail(self, chars: int = 2000) -> str:
        out = []
        logs = [s.log_path for s in self.slots] + [self.zygote.log_path if self.zygote is not None else None]
        for path in logs:
            if path is not None and path.exists():
                out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)


@contextlib.contextmanager
def _database(root: Path, database: str) -> Iterator[str]:
    """The decision log's URL: SQLite in ``root``, or a private PostgreSQL schema dropped afterwards."""
    if database == "sqlite":
        yield f"sqlite:///{root / 'decisions.sqlite'}"
        return
    if database != "postgresql":
        raise BenchError(f"--database is sqlite or postgresql, not {database!r}")
    import sqlalchemy as sa

    schema = f"aidg_sd_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        raise BenchError(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({exc.orig})") from exc
    try:
        yield f"{PG}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


# --- the producer --------------------------------------------------------------------------------------------------


class Producer(threading.Thread):
    """Records decisions, stores each batch of events (the outbox), then publishes it; paced by ``allowed()``."""

    def __init__(self, dlog: Any, bus: Any, stream: str, plan: list[tuple[int, str]], seed: int,
                 allowed: Callable[[], int], hold_at: int | None = None, batch: int = 50) -> None:  # fmt: skip
        super().__init__(name="producer", daemon=True)
        self.hold_at = hold_at  # stop here until the harness has killed Redis (``resume``), then go on at once
        self.holding = False
        self.resume = threading.Event()
        self.dlog, self.bus, self.stream, self.plan, self.allowed, self.batch = dlog, bus, stream, plan, allowed, batch
        self.rng = np.random.default_rng(seed)
        self.decisions: dict[int, Any] = {}
        self.events: list[Any] = []
        self.produced = 0
        self.unpublished = 0
        self.last_id: str | None = None
        self.not_accepted = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the harness
            self.error = exc

    def _run(self) -> None:
        from aidg.errors import BackendUnavailableError
        from aidg.online.worker import reward_message

        i = 0
        forced = False  # the first batch after Redis went down is published past the pacing: it must fail
        while i < len(self.plan) and not self._halt.is_set():
            if self.hold_at is not None and self.produced >= self.hold_at and not self.resume.is_set():
                self.holding = True
                self.resume.wait(0.02)
                forced = self.resume.is_set()
                continue
            self.holding = False
            room = self.batch if forced else min(self.batch, self.allowed() - self.produced)
            if room <= 0:
                self._halt.wait(0.02)
                continue
            forced = False
            chunk = self.plan[i : i + room]
            for d, _ in chunk:
                if d not in self.decisions:
                    self.decisions[d] = _decision(d, self.rng)
                    self.dlog.record(self.decisions[d])
            evs = [_event(d, p, self.rng) for d, p in chunk]
            statuses = self.dlog.receive(evs)  # durable before any publish: the outbox
            accepted = [e for e, st in zip(evs, statuses, strict=True) if st == "accepted"]
            self.not_accepted += len(evs) - len(accepted)
            self.events += accepted
            self.produced += len(chunk)
            i += len(chunk)
            try:
                ids = self.bus.publish(self.stream, [reward_message(e) for e in accepted])
                if ids:
                    self.last_id = ids[-1]
            except BackendUnavailableError:
                self.unpublished += len(accepted)  # stored: the workers' outbox republishes them


# --- the python worker entry point (fast start, injectable faults) -------------------------------------------------


def _patch_no_dedupe() -> None:
    """Fault: ``claim`` hands back every known event, applied or not (the exactly-once guard removed)."""
    from sqlalchemy import select, tuple_, update

    from aidg.decisionlog import tx as decisions_tx
    from aidg.decisionlog.schema import EVENTS, row_event, utcnow

    def claim(self: Any, keys: Any) -> list[Any]:
        ids = list(dict.fromkeys(keys))
        where = tuple_(EVENTS.c.decision_id, EVENTS.c.event_id).in_(ids)
        rows = self._conn.execute(select(EVENTS).where(where)).all()
        self._conn.execute(update(EVENTS).where(where).values(applied_at=utcnow()))
        found = {(r.decision_id, r.event_id): row_event(r) for r in rows}
        return [found[i] for i in ids if i in found]

    decisions_tx.Tx.claim = claim  # type: ignore[method-assign]


def worker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="stream_durability.py --worker")
    p.add_argument("--redis", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--consumer", required=True)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--claim-idle-ms", type=int, default=30_000)
    p.add_argument("--apply-delay-ms", type=float, default=0.0)
    p.add_argument("--outbox-every-s", type=float, default=60.0)
    p.add_argument("--outbox-age-s", type=float, default=30.0)
    p.add_argument("--no-outbox", action="store_true")
    p.add_argument("--fault", choices=FAULTS, default="none")
    a = p.parse_args(argv)

    from aidg.config import RewardSettings, StreamSettings
    from aidg.decisionlog.log import DecisionLog
    from aidg.errors import BackendUnavailableError
    from aidg.online.worker import StreamWorker, reward_keys
    from aidg.store.online_memory import MemoryOnlineStore
    from aidg.stream.redis_bus import RedisBus

    if a.fault == "no_dedupe":
        _patch_no_dedupe()

    class Worker(StreamWorker):
        def republish(self, older_than_s: float = a.outbox_age_s, limit: int = 1000) -> int:
            return 0 if a.no_outbox else super().republish(older_than_s, limit)

        def run_once(self, block_ms: int | None = None) -> int:
            if a.fault != "ack_before_commit":
                return super().run_once(block_ms)
            s = self.settings
            msgs = self.bus.consume(s.stream, s.group, self.consumer, s.batch_size, s.block_ms)
            if not msgs:
                return 0
            self.bus.ack(s.stream, s.group, [m.id for m in msgs])  # the fault: acknowledged before the commit
            self.apply(reward_keys(msgs))
            self.messages += len(msgs)
            return len(msgs)

    settings = StreamSettings(stream=a.stream, group=GROUP, batch_size=a.batch_size, claim_idle_ms=a.claim_idle_ms,
                              apply_delay_ms=a.apply_delay_ms)  # fmt: skip
    bus = RedisBus(a.redis, max_deliveries=settings.max_deliveries, claim_idle_ms=a.claim_idle_ms)
    dlog = DecisionLog(a.db)
    try:
        worker = Worker(bus, dlog, MemoryOnlineStore(), settings, RewardSettings(), a.consumer)
    except BackendUnavailableError as exc:  # Redis restarting: exit, the supervisor starts us again
        print(f"redis not reachable: {exc}", file=sys.stderr, flush=True)
        return 3
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    print(READY, a.consumer, file=sys.stderr, flush=True)
    worker.run(outbox_every_s=a.outbox_every_s)
    bus.close()
    dlog.close()
    return 0


def zygote_main(argv: list[str]) -> int:
    """``--zygote WORKER-ARGS``: import once, then serve ``spawn CONSUMER LOG``, ``kill PID``, ``poll``, ``term``."""
    import ctypes


    libc = ctypes.CDLL(None, use_errno=True)
    live: set[int] = set()

    def reply(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def reap(pid: int, block: bool) -> bool:
        done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        return done == pid

    reply(ZYGOTE_READY)
    try:
        for line in sys.stdin:
            cmd, *args = line.split()
            if cmd == "spawn":
                pid = os.fork()
                if pid == 0:  # the worker
                    rc = 1
                    try:
                        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the zygote
                        null = os.open(os.devnull, os.O_RDWR)
                        err = os.open(args[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                        os.dup2(null, 0)
                        os.dup2(null, 1)
                        os.dup2(err, 2)
                        signal.signal(signal.SIGTERM, signal.SIG_DFL)
                        rc = worker_main([*argv, "--consumer", args[0]])
                    except BaseException:
                        import traceback

                        traceback.print_exc()
                    finally:
                        sys.stderr.flush()
                        os._exit(rc)
                live.add(pid)
                reply(f"pid {pid}")
            elif cmd == "kill":
                pid = int(args[0])
                if pid in live:  # only our own, unreaped child: its PID cannot have been reused
                    os.kill(pid, signal.SIGKILL)
                    reap(pid, block=True)
                    live.discard(pid)
                reply("ok")
            elif cmd == "poll":
                live -= {pid for pid in list(live) if reap(pid, block=False)}
                reply(" ".join(["alive", *map(str, sorted(live))]))
            elif cmd == "term":
                break
    finally:  # "term" or the harness gone (stdin closed): stop every child, SIGKILL after 15 s
        for pid in live:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while live and time.monotonic() < deadline:
            live -= {pid for pid in list(live) if reap(pid, block=False)}
            time.sleep(0.05)
        for pid in live:
            os.kill(pid, signal.SIGKILL)
            reap(pid, block=True)
        with contextlib.suppress(OSError):
            reply("done")
    return 0


# --- checking the outcome ------------------------------------------------------------------------------------------


def _verify(db: str, produced: list[Any], decisions: dict[int, Any]) -> dict[str, Any]:
    import sqlalchemy as sa

    from aidg.config import RewardSettings
    from aidg.decisionlog.log import DecisionLog
    from aidg.decisionlog.schema import EVENTS, KPIS
    from aidg.online.worker import posterior_name
    from aidg.policy.bandit import RiskAwareThompsonSampling

    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            cols = (EVENTS.c.event_id, EVENTS.c.decision_id, EVENTS.c.part, EVENTS.c.value, EVENTS.c.at)
            rows = conn.execute(sa.select(*cols).where(EVENTS.c.applied_at.is_not(None))).all()
            names = [f"{ARM}/{p}" for p in PART_LAG]
            tally = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(KPIS.c["count"]), 0))
                                 .where(KPIS.c.name.in_(names))).scalar_one()  # fmt: skip
    finally:
        engine.dispose()
    applied_ids = [r.event_id for r in rows]
    applied = set(applied_ids)
    produced_ids = {e.event_id for e in produced}
    duplicate_ids = len(applied_ids) - len(applied)
    duplicate_applications = int(tally) - len(applied) + duplicate_ids

    by_id = {d.decision_id: d for d in decisions.values()}
    ref = RiskAwareThompsonSampling(DIM, reward=RewardSettings())
    for did in sorted({r.decision_id for r in rows}):
        rec = by_id[did]
        ref.register(did, rec.phi, rec.score, rec.predicted)
    for r in sorted(rows, key=lambda r: (r.at, r.event_id)):
        ref.update_params(r.decision_id, r.part, r.value)
    dlog = DecisionLog(db)
    try:
        post = dlog.posterior(posterior_name(MODEL_VERSION))
    finally:
        dlog.close()
    if post is None:
        rel = 0.0 if not rows else float("inf")
    else:
        rel = max(float(np.linalg.norm(post.A - ref.A_) / np.linalg.norm(ref.A_)),
                  float(np.linalg.norm(post.b - ref.b_)) / max(float(np.linalg.norm(ref.b_)), 1e-12))  # fmt: skip
    posterior_ok = rel <= 1e-6
    return {
        "events_applied": len(applied & produced_ids),
        "events_missing": len(produced_ids - applied),
        "events_unexpected": len(applied - produced_ids),
        "events_double_counted": max(duplicate_applications, 0 if posterior_ok else 1),
        "duplicate_applications": duplicate_applications,
        "duplicate_applied_ids": duplicate_ids,
        "kpi_applications": int(tally),
        "posterior_rel_error": rel,
        "posterior_matches": posterior_ok,
    }


# --- the harness ---------------------------------------------------------------------------------------------------


class _Progress(threading.Thread):
    """One tqdm-style status line on stderr (rewritten in place on a terminal, every 10 s otherwise)."""

    def __init__(self, status: Callable[[], dict[str, Any]], sink: Callable[[dict[str, Any]], None] | None) -> None:
        super().__init__(name="progress", daemon=True)
        self.status, self.sink = status, sink
        self.tty = sys.stderr.isatty()
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        if self.sink is None and self.tty:
            print(file=sys.stderr, flush=True)

    def run(self) -> None:
        every = 0.5 if (self.tty or self.sink is not None) else 10.0
        while not self._halt.wait(every):
            try:
                s = self.status()
            except Exception:  # a busy database: the next tick tries again
                continue
            if self.sink is not None:
                self.sink(s)
                continue
            n = max(s["events"], 1)
            bar = "#" * int(20 * s["applied"] / n)
            line = (f"{s['phase']:>8} [{bar:<20}] applied {s['applied']:,}/{s['events']:,} "
                    f"produced {s['produced']:,} kills {s['kills']}/{s['kills_planned']} "
                    f"redis {s['redis_restarts']} pending {s['pending']} {s['elapsed']:.0f}s")  # fmt: skip
            print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)


def run(
    events: int = 100_000,
    kills: int = 50,
    workers: int = 1,
    redis_restart: bool = True,
    seed: int = 0,
    progress: bool | Callable[[dict[str, Any]], None] = True,
    *,
    entry: str = "cli",
    database: str = "sqlite",
    batch_size: int = 200,
    claim_idle_ms: int = 30_000,
    apply_delay_ms: float = 0.0,
    kill_delay_s: tuple[float, float] = (0.2, 3.0),
    redis_restart_at: float = 0.4,
    redis_down_s: float = 1.0,
    redis_lose_data: bool = False,
    pace: bool = True,
    backlog: bool = False,
    outbox: bool = True,
    outbox_every_s: float = 60.0,
    outbox_age_s: float = 30.0,
    fault: str = "none",
    drain_timeout_s: float = 180.0,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    """Run the durability harness once (see the module docstring); returns the figures.

    Args:
        entry: ``"cli"`` runs ``aidg stream-worker`` (its outbox: at start and every 60 s, events older than
            30 s); ``"python"`` runs :func:`worker_main`, whose outbox cadence, ``outbox`` on/off and ``fault``
            (``ack_before_commit``, ``no_dedupe``: protections removed, to show the checks catch it) are set here;
            ``"fork"`` runs the same, forked from a :class:`Zygote` (restarts in ms: many kills in a short test).
        claim_idle_ms: How long a killed worker's batch stays pending before a live consumer reclaims it.
        apply_delay_ms: The fault-test knob: a pause per event inside each batch's transaction.
        kill_delay_s: A kill comes a uniform random time in this range after the chosen worker is ready.
        redis_restart_at: Redis is killed once this share of the events is produced (the producer waits there
            for it), then restarted after ``redis_down_s`` and at least one failed publish.
        redis_lose_data: Delete Redis's AOF before the restart: the stream, its consumer group and pending list
            are gone, and only the outbox can bring back what was not applied yet.
        pace: Produce at most ``(k + 1) / (kills + 1)`` of the events before the k-th kill (else all at once).
        backlog: Produce every event before the workers start (no pacing, no Redis restart): the first kills
            then land inside batches for sure.
        drain_timeout_s: How long to wait, after the last kill and event, for every event to be applied and the
            pending list to empty.
        timeout_s: The whole run's bound; past it production and kills stop and the run is reported as is.
    """
    from aidg.decisionlog.log import DecisionLog
    from aidg.stream.redis_bus import RedisBus

    if entry not in ENTRIES:
        raise BenchError(f"entry is one of {', '.join(ENTRIES)}, not {entry!r}")
    if entry == "cli" and (fault != "none" or not outbox or (outbox_every_s, outbox_age_s) != (60.0, 30.0)):
        raise BenchError("faults and outbox settings need entry 'python' or 'fork' (aidg stream-worker has neither)")
    if fault not in FAULTS:
        raise BenchError(f"fault is one of {', '.join(FAULTS)}, not {fault!r}")
    if backlog and redis_restart:
        raise BenchError("backlog=True produces everything before the workers start: it cannot restart Redis midway")
    import aidg.online.worker  # noqa: F401  (the producer's import, done now so production starts at once)

    t_start = time.monotonic()
    rnd = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="aidg-stream-durability-"))
    stream = f"aidg-sd-{uuid.uuid4().hex[:8]}"
    redis = RedisProc(root)
    pool: Workers | None = None
    producer: Producer | None = None
    prog: _Progress | None = None
    kills_done = 0
    phase = "start"
    try:
        with _database(root, database) as db:
            redis.start()
            dlog = DecisionLog(db)
            bus = RedisBus(redis.url, claim_idle_ms=claim_idle_ms)
            bus.ensure_group(stream, GROUP)
            if entry == "cli":
                exe = str(Path(sys.executable).with_name("aidg"))
                argv, marker = [exe, "stream-worker", "--consumer", "{consumer}"], "stream worker "
            else:
                wargs = ["--redis", redis.url, "--db", db, "--stream", stream, "--batch-size", str(batch_size),
                         "--claim-idle-ms", str(claim_idle_ms), "--apply-delay-ms", str(apply_delay_ms),
                         "--outbox-every-s", str(outbox_every_s), "--outbox-age-s", str(outbox_age_s),
                         "--fault", fault] + ([] if outbox else ["--no-outbox"])  # fmt: skip
                argv, marker = [sys.executable, str(HERE), "--worker", *wargs, "--consumer", "{consumer}"], READY
            env = {k: v for k, v in os.environ.items() if not k.startswith("AIDG_")}
            env.update({
                "AIDG_HOME": str(root / "home"), "AIDG_REDIS_URL": redis.url, "AIDG_DATABASE_URL": db,
                "AIDG_STREAM__STREAM": stream, "AIDG_STREAM__GROUP": GROUP,
                "AIDG_STREAM__BATCH_SIZE": str(batch_size), "AIDG_STREAM__CLAIM_IDLE_MS": str(claim_idle_ms),
                "AIDG_STREAM__APPLY_DELAY_MS": str(apply_delay_ms), "PYTHONUNBUFFERED": "1",
            })  # fmt: skip
            zygote = None
            if entry == "fork":
                (root / "workers").mkdir(parents=True, exist_ok=True)
                zargv = [sys.executable, str(HERE), "--zygote", *wargs]
                zygote = Zygote(zargv, {**env, "OPENBLAS_NUM_THREADS": "1"}, root / "workers" / "zygote.log")
            pool = Workers(workers, root, env, argv, marker, zygote)
            plan = _plan(events)

            def allowed() -> int:
                if not pace or backlog or kills == 0:
                    return len(plan)
                return len(plan) if kills_done >= kills else len(plan) * (kills_done + 1) // (kills + 1)

            hold_at = int(redis_restart_at * len(plan)) if redis_restart else None
            producer = Producer(dlog, bus, stream, plan, seed, allowed, hold_at)
            pending_now = [0]

            def status() -> dict[str, Any]:
                c = dlog.counts()
                with contextlib.suppress(Exception):
                    pending_now[0] = bus.pending(stream, GROUP)
                assert producer is not None
                return {"phase": phase, "events": len(plan), "produced": producer.produced, "applied": c["applied"],
                        "kills": kills_done, "kills_planned": kills, "redis_restarts": redis.restarts,
                        "pending": pending_now[0], "elapsed": time.monotonic() - t_start}  # fmt: skip

            if progress:
                prog = _Progress(status, progress if callable(progress) else None)
                prog.start()
            producer.start()
            if backlog:
                producer.join(timeout_s)
            pool.start()
            phase = "faults"
            deadline = t_start + timeout_s
            restart_due = redis_restart
            acked_before_kill: str | None = None
            kept: bool | None = None
            redis_down_at: float | None = None
            failed_before = 0
            slot = pool.slots[rnd.randrange(workers)] if kills else None
            kill_at: float | None = None
            kill_spawn = 0
            next_revive = 0.0
            while time.monotonic() < deadline:
                if producer.error is not None:
                    raise producer.error
                now = time.monotonic()
                if restart_due and redis_down_at is None and producer.holding:
                    acked_before_kill = producer.last_id
                    redis.kill()
                    redis_down_at, failed_before = now, producer.unpublished
                    producer.resume.set()
                elif (
                    redis_down_at is not None
                    and now - redis_down_at >= redis_down_s
                    and (producer.unpublished > failed_before or now - redis_down_at >= 10 * redis_down_s)
                ):
                    if redis_lose_data:
                        shutil.rmtree(redis.dir / "appendonlydir", ignore_errors=True)
                    redis.start()
                    redis.restarts += 1
                    redis_down_at, restart_due = None, False
                    kept = None if redis_lose_data else _kept(redis.url, stream, acked_before_kill)
                if now >= next_revive:
                    pool.revive()
                    next_revive = now + 0.1
                if slot is not None and kills_done < kills:
                    if kill_at is not None and slot.spawns != kill_spawn:  # it exited by itself meanwhile
                        kill_at = None
                    if kill_at is None and pool.ready(slot):
                        kill_at, kill_spawn = now + rnd.uniform(*kill_delay_s), slot.spawns
                    if kill_at is not None and now >= kill_at and pool.alive(slot):
                        pool.kill(slot)
                        kills_done += 1
                        slot = pool.slots[rnd.randrange(workers)]
                        kill_at = None
                if kills_done >= kills and not producer.is_alive() and not restart_due and redis_down_at is None:
                    break
                time.sleep(0.02)
            producer.stop()
            producer.join(30)
            if redis_down_at is not None:  # the deadline came while it was down
                redis.start()
                redis.restarts += 1
            phase = "drain"
            t_end = time.monotonic()
            pending_after: float | None = None
            drain_deadline = min(t_end + drain_timeout_s, max(deadline, t_end + 5.0))
            while time.monotonic() < drain_deadline:
                pool.revive()
                c = dlog.counts()
                try:
                    quiet = bus.pending(stream, GROUP) == 0 and bus.lag(stream, GROUP) == 0
                except Exception:
                    quiet = False
                if quiet and c["applied"] == c["events"] == producer.produced - producer.not_accepted:
                    pending_after = time.monotonic() - t_end
                    break
                time.sleep(0.2)
            phase = "check"
            pending_final = bus.pending(stream, GROUP)
            dead = len(bus.dead_letters(stream, count=10_000))
            added = int(_stream_info(redis.url, stream)["entries-added"])
            if prog is not None:
                prog.stop()
                prog = None
            pool.stop()
            bus.close()
            dlog.close()
            checked = _verify(db, producer.events, producer.decisions)
            out = {
                "events_produced": producer.produced,
                "events_applied": checked.pop("events_applied"),
                "events_double_counted": checked.pop("events_double_counted"),
                "worker_kills": kills_done,
                "redis_restarts": redis.restarts,
                "pending_after_s": None if pending_after is None else round(pending_after, 2),
                "duplicate_applications": checked.pop("duplicate_applications"),
                "seconds": round(time.monotonic() - t_start, 1),
                **checked,
                "pending_final": pending_final,
                "stream_entries_added": added,
                "events_unpublished": producer.unpublished,
                "events_not_accepted": producer.not_accepted,
                "redis_kept_acked_writes": kept,
                "redis_lost_data": redis_lose_data and redis.restarts > 0,
                "worker_exits": pool.exits,
                "dead_letters": dead,
                "workers": workers,
                "entry": entry,
                "database": database,
                "fault": fault,
                "outbox": outbox,
                "claim_idle_ms": claim_idle_ms,
                "seed": seed,
                "timed_out": time.monotonic() > deadline,
            }
            return out
    except BaseException:
        if pool is not None:
            log("workers' logs:\n" + pool.tail())
        raise
    finally:
        # each step on its own: whatever failed, every process we started is stopped (by its PID)
        for step in (prog.stop if prog is not None else None, producer.stop if producer is not None else None,
                     pool.stop if pool is not None else None, redis.stop):  # fmt: skip
            if step is not None:
                try:
                    step()
                except Exception as exc:
                    log(f"cleanup: {type(exc).__name__}: {exc}")
        shutil.rmtree(root, ignore_errors=True)


def _stream_info(url: str, stream: str) -> dict[str, Any]:
    """``XINFO STREAM``: ``entries-added`` (every XADD ever: the producer's and the outbox's), ``last-generated-id``."""
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return dict(client.xinfo_stream(stream))
    finally:
        client.close()


def _kept(url: str, stream: str, last_acked: str | None) -> bool | None:
    """After the restart: is the last entry Redis acknowledged to the producer before the kill still there?"""
    if last_acked is None:
        return None
    last = str(_stream_info(url, stream)["last-generated-id"])

    def key(i: str) -> tuple[int, int]:
        ms, seq = i.split("-")
        return int(ms), int(seq)

    return key(last) >= key(last_acked)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    if argv[:1] == ["--zygote"]:
        return zygote_main(argv[1:])
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated run still stops its Redis and workers
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-redis-restart", action="store_true")
    p.add_argument("--redis-lose-data", action="store_true", help="delete Redis's AOF before its restart")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--entry", choices=ENTRIES, default="cli",
                   help="aidg stream-worker; this file's worker; or it, forked from a pre-imported one")  # fmt: skip
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--claim-idle-ms", type=int, default=30_000)
    p.add_argument("--apply-delay-ms", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=3600.0, help="the whole run's bound in seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress on stderr)")
    a = p.parse_args(argv)
    try:
        out = run(a.events, a.kills, a.workers, not a.no_redis_restart, a.seed, entry=a.entry, database=a.database,
                  claim_idle_ms=a.claim_idle_ms, apply_delay_ms=a.apply_delay_ms, timeout_s=a.timeout,
                  redis_lose_data=a.redis_lose_data)  # fmt: skip
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE.parent))
    from service_proc import emit  # bench/service_proc.py: the benches' shared report printer

    emit(out, a.json)
    ok = (out["events_applied"] == out["events_produced"] and out["events_double_counted"] == 0
          and out["pending_after_s"] is not None and out["pending_after_s"] <= 60)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
