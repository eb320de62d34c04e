"""Serving in N worker processes that each own a listening socket on the same port (``SO_REUSEPORT``).

uvicorn's own ``--workers`` shares one listening socket among the processes,
and on Linux one process then tends to accept most connections: with a few
keep-alive clients one core works while the other idles. With one
``SO_REUSEPORT`` socket per process the kernel spreads new connections over
the processes by their address hash, as gunicorn's ``--reuse-port`` does.
The parent only supervises: it stops every worker on Ctrl-C / SIGTERM, and
when one worker dies it stops the others and exits non-zero, so a process
manager restarts the whole service. With API keys and more than one worker,
the parent makes the shared array the workers' rate limits live in
(:class:`aidg.service.ratelimit.SharedLimiter`), so a key's limit holds across
workers without Redis; with more than one worker it makes the array of the
policy state they share too (the gate's budget and the exploration quota,
:mod:`aidg.service.shared_state`; with Redis, Redis holds it instead).
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import socket
import time
from types import FrameType
from typing import Any

FACTORY = "aidg.service.app:app_from_env"


def _socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, tat: Any = None, policy_state: Any = None) -> None:
    import uvicorn

    if tat is not None:
        from aidg.service.ratelimit import share_across_workers

        share_across_workers(tat)  # one rate limit per API key across the workers, not one per worker
    if policy_state is not None:
        from aidg.service import shared_state

        shared_state.share_across_workers(policy_state)  # one gate budget and exploration quota, not one per worker

    config = uvicorn.Config(
        FACTORY, factory=True, log_level="warning", access_log=False, loop="uvloop", http="httptools"
    )
    uvicorn.Server(config).run(sockets=[_socket(host, port)])


def port_in_use(host: str, port: int) -> bool:
    """Whether something (not sharing the port with SO_REUSEPORT) already listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def serve(host: str, port: int, workers: int, rate_slots: int = 0) -> int:
    """Run ``workers`` processes until a signal, or until one of them dies; returns the exit code. ``rate_slots``
    (the number of API keys): with more than one worker, their rate-limit buckets live in one shared array."""
    ctx = mp.get_context("spawn")  # a fresh interpreter per worker: nothing from the parent's imports leaks in
    tat = ctx.Array("q", rate_slots) if rate_slots and workers > 1 else None
    policy_state = None
    if workers > 1:
        from aidg.service.shared_state import worker_array

        policy_state = worker_array(ctx)
    procs = [ctx.Process(target=_worker, args=(host, port, tat, policy_state), name=f"aidg-serve-{i}")
             for i in range(workers)]  # fmt: skip
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.start()
        while not stopping and all(p.is_alive() for p in procs):
            time.sleep(0.2)
        failed = not stopping
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # uvicorn shuts down gracefully on SIGTERM
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
        for s, h in old.items():
            signal.signal(s, h)
    return 1 if failed else 0


__all__ = ["port_in_use", "serve"]
