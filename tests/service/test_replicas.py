"""One guarantee across replicas: two ``aidg serve`` processes on one Redis and PostgreSQL keep one conservative-gate
budget and one exploration quota, the ones a single process gets from the same request stream in the order Redis
applied it (aidg.service.shared_state)."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import Any

import redis

from aidg.config import Settings
from aidg.decisionlog.log import DecisionLog
from aidg.policy.conservative import ConservativeGate
from tests.benches import load_bench
from tests.servers import REDIS_URL, private_servers

REQUESTS = 60


def _replay_gate(traces: list[dict[str, Any]], alpha: float) -> ConservativeGate:
    """The gate of one process fed the logged rounds in the order Redis applied them; each admission must agree."""
    gate = ConservativeGate(alpha=alpha)
    for i, t in enumerate(sorted(traces, key=lambda t: t["seq"])):
        d = f"r{i}"
        if t["lcb"] is not None:  # the policy's variant asked the gate
            assert gate.admit(d, t["lcb"], t["baseline"]) == t["admitted"], t
            if not t["admitted"]:
                gate.record(d, "baseline", t["baseline"], t["baseline"])
        else:  # the current deal played before the gate was asked
            gate.record(d, "baseline", t["baseline"], t["baseline"])
    return gate


def _check(states: list[dict[str, Any]], shared: dict[str, float] | None, where: str) -> None:
    """The logged steps replay, in their order, through one process's gate and quota to the same outcome."""
    alpha = Settings().bandit.conservative_alpha
    gates = [s["gate"] for s in states]
    assert all(g is not None and g["seq"] is not None for g in gates)
    assert sorted(g["seq"] for g in gates) == list(range(1, REQUESTS + 1))  # one round each, one order
    one = _replay_gate(gates, alpha)
    assert one.rounds == REQUESTS and one.budget >= 0  # the bound holds over every process's rounds together
    if shared is not None:
        assert shared["rounds"] == REQUESTS and shared.get("refused", 0) == one.refused
        assert math.isclose(shared["budget"], one.budget, rel_tol=1e-9, abs_tol=1e-9), (shared["budget"], one.budget)
    # exploration: admissions are a quota over every process's requests, as one process would admit them
    explores = sorted((s["explore"] for s in states if "explore" in s), key=lambda e: e["seq"])
    assert explores and [e["seq"] for e in explores] == list(range(1, len(explores) + 1))
    admitted = 0
    for n, e in enumerate(explores, start=1):
        assert (admitted < e["rate"] * n) == e["admitted"], e
        admitted += e["admitted"]
    if shared is not None:
        assert shared["explore_requests"] == len(explores) and shared.get("explore_admitted", 0) == admitted
    assert 0 < admitted <= math.ceil(0.3 * len(explores))
    print(f"\n{where}: {REQUESTS} requests, {one.rounds} gate rounds, {one.refused} refused, "
          f"budget {one.budget:.4f}; {admitted} of {len(explores)} requests admitted to explore")


def _merchants(trained: dict[str, Any]) -> list[str]:
    merchants = trained["world"].tables["merchants"]
    if "consent_personalization" in merchants.columns:
        merchants = merchants[merchants["consent_personalization"].astype(bool)]
    return [str(m) for m in merchants.merchant_id][:12]


def test_two_replicas_on_redis_keep_one_gate_budget_and_one_exploration_quota(trained: dict[str, Any]) -> None:
    proc = load_bench("service_proc.py")
    home, data, ids = Path(trained["settings"].home), Path(trained["data"]), _merchants(trained)
    with private_servers() as srv:
        env = {
            "AIDG_REDIS_URL": REDIS_URL, "AIDG_DATABASE_URL": srv["db"], "AIDG_REDIS_NAMESPACE": srv["ns"],
            "AIDG_STREAM__STREAM": srv["stream"], "AIDG_API_KEYS": None,
            "AIDG_EXPLORATION__INITIAL_RATE": "0.3",  # a share 60 requests show
        }  # fmt: skip
        # two `aidg serve --join` behind one port, started together
        with proc.service(home, data, 1, env, 240.0, extra_args=["--no-compile"], replicas=2) as (port, pgid):
            made, served_by = _generate_each_on_its_own_connection(proc, port, pgid, ids)
        assert len(served_by) == 2, f"every request went to one replica: {served_by}"
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{srv['ns']}:policy:*"))
        assert len(keys) == 1, keys  # both replicas serve the same model: one hash
        shared = {k.decode(): float(v) for k, v in client.hgetall(keys[0]).items()}
        client.close()
        states = _logged_states(srv["db"], made)
    _check(states, shared, "2 replicas on Redis + PostgreSQL")


def test_the_workers_of_one_serve_without_redis_keep_one_gate_budget_and_one_exploration_quota(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    proc = load_bench("service_proc.py")
    home, data, ids = Path(trained["settings"].home), Path(trained["data"]), _merchants(trained)
    db = f"sqlite:///{tmp_path / 'decisions.sqlite'}"
    env = {"AIDG_REDIS_URL": None, "AIDG_DATABASE_URL": db, "AIDG_API_KEYS": None,
           "AIDG_EXPLORATION__INITIAL_RATE": "0.3"}  # fmt: skip
    with proc.service(home, data, 2, env, 240.0, extra_args=["--no-compile"]) as (port, pgid):
        made, workers = _generate_each_on_its_own_connection(proc, port, pgid, ids)
    assert len(workers) == 2, f"every request went to one worker: {workers}"
    _check(_logged_states(db, made), None, "1 serve, 2 workers, embedded")


def _logged_states(db: str, decision_ids: list[str]) -> list[dict[str, Any]]:
    """What the shared policy state did for each decision, as its payload in the decision log says."""
    log = DecisionLog(db)
    try:
        return [log.get(d).payload["shared_state"] for d in decision_ids]  # type: ignore[union-attr]
    finally:
        log.close()


def _generate_each_on_its_own_connection(
    proc: Any, port: int, pgid: int, ids: list[str]
) -> tuple[list[str], set[int]]:
    """REQUESTS generates, a connection each (the kernel spreads them over every process listening on the port):
    the decision ids and the processes that answered."""
    made, served_by = [], set()
    for i in range(REQUESTS):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            body = json.dumps({"merchant_id": ids[i % len(ids)], "n_variants": 10}).encode()
            s.sendall(b"POST /v1/deals/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)  # fmt: skip
            reply = b""
            while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < _length(reply):
                reply += s.recv(65536)
            served_by.add(proc._conn_pid(pgid, port, s.getsockname()[1]))
        made.append(json.loads(reply.split(b"\r\n\r\n", 1)[1])["decision_id"])
    served_by.discard(None)
    return made, served_by


def _length(reply: bytes) -> int:
    head = reply.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30


def test_worker_state_rows_are_per_model_and_a_full_array_falls_back_to_the_process() -> None:
    import multiprocessing as mp

    from aidg.service import shared_state as ss

    array = ss.worker_array(mp.get_context("spawn"))
    a1, a2, b = ss.WorkerState(array, "v1/x"), ss.WorkerState(array, "v1/x"), ss.WorkerState(array, "v2/y")
    assert a1.row == a2.row != b.row
    assert a1.admit(1.0, 1.0, 0.1) == (True, 1) and a2.admit(-5.0, 1.0, 0.1) == (False, 2)  # one budget: 0.1
    assert a2.record(1.0, 1.0, 0.1, new_round=False) == 2 and b.state()["rounds"] == 0
    assert [a1.explore(0.5) for _ in range(4)] == [(True, 1), (False, 2), (True, 3), (False, 4)]
    state = a2.state()
    assert math.isclose(state.pop("budget"), 0.2)  # 0.1 (admitted: 1 − 0.9) + 0.1 (the refused round's α b)
    assert state == {"rounds": 2.0, "refused": 1.0, "explore_requests": 4.0, "explore_admitted": 2.0}
    for i in range(ss.SLOTS - 2):
        ss.WorkerState(array, f"v{i + 3}/z")
    ss.share_across_workers(array)
    try:
        assert ss.shared_state(Settings(redis_url=None), "v99/new") is None  # full: the process keeps its own
        assert isinstance(ss.shared_state(Settings(redis_url=None), "v1/x"), ss.WorkerState)
    finally:
        ss.share_across_workers(None)
