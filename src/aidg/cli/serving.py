"""Serving commands: the API's worker processes and the stream worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from aidg.cli.common import JsonOpt, app, cli_settings, emit, err, fail, user_errors
from aidg.config import Settings, load_settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serve_env(s: Settings, data: Path | None, version: str) -> Settings:
    """Check what the service needs before any worker starts; pass data and version to the workers by environment."""
    import os

    from aidg.registry import ModelRegistry

    folder = data or s.service.data or s.paths.home / "demo" / "world"
    if not Path(folder).exists():
        fail(f"no data folder to serve at {folder}: pass --data DIR (aidg simulate's output or your tables)")
    with user_errors():
        versions = ModelRegistry(s).versions()
    if not versions:
        fail(f"no trained model under {s.paths.home}: run `aidg train --data {folder}` (or `aidg demo`) first")
    if version != "latest" and version not in versions:
        fail(f"no model version {version!r}; versions: {', '.join(versions)}")
    os.environ["AIDG_SERVICE__DATA"] = str(Path(folder).resolve())
    os.environ["AIDG_SERVICE__MODEL_VERSION"] = version
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"  # one BLAS thread per worker process, one process per core (FACTS: ×3 p99 otherwise)
    return load_settings()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (without API keys only 127.0.0.1).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (0: one per core).", min=0, max=64)] = 0,
    data: Annotated[Path | None, typer.Option(help="Data folder served (default: the demo world).")] = None,
    version: Annotated[
        str | None,
        typer.Option(help="Model version served when no rollout names a champion (default: AIDG_SERVICE__MODEL_VERSION "
                     "or the latest)."),
    ] = None,
    compile_: Annotated[
        bool, typer.Option("--compile/--no-compile", help="TorchInductor-compile the scorer (~25 s once, then cached).")
    ] = True,
    join: Annotated[
        bool,
        typer.Option("--join", help="Join the replicas already serving this port on this machine (SO_REUSEPORT: the "
                     "kernel spreads connections over every replica's workers); they share state through Redis."),
    ] = False,
) -> None:
    """Serve the API (OpenAPI at /docs). Embedded backends unless AIDG_REDIS_URL / AIDG_DATABASE_URL are set."""
    import os

    from aidg.service.ratelimit import shared_slots
    from aidg.service.server import port_in_use
    from aidg.service.server import serve as run_workers

    s = cli_settings()
    if not s.api_keys and host not in LOOPBACK:
        fail(
            f"no API keys are configured, so `aidg serve` listens only on 127.0.0.1, not {host}: set AIDG_API_KEYS "
            '(e.g. \'{"a-long-secret": {"role": "admin"}}\') to serve on other addresses'
        )
    if join and s.backend_kinds()["store"] != "redis":
        fail("--join runs another replica behind the same port: replicas share the gate's budget, the exploration "
             "quota and rate limits through Redis, so set AIDG_REDIS_URL (and AIDG_DATABASE_URL for one decision log)")
    version = version or s.service.model_version
    s = _serve_env(s, data, version)
    if not join and port_in_use(host, port):
        fail(f"{host}:{port} is in use: stop what listens there, pass --port, or --join to add a replica behind it")
    os.environ["AIDG_SERVICE__COMPILE"] = "true" if compile_ else "false"
    n = workers or os.cpu_count() or 1
    k = s.backend_kinds()
    backends = f"store {k['store']}, log {k['log']}, bus {k['bus']}"
    err.print(f"AIDG serving version {version} (or the champion of a rollout in the decision log) on "
              f"http://{host}:{port} ({n} workers; {backends}); docs at /docs, dashboard at /dashboard")  # fmt: skip
    if not s.privacy.encryption_key:
        err.print("[yellow]warning:[/] AIDG_PRIVACY__ENCRYPTION_KEY is not set: stored merchant data is not encrypted "
                  "at rest (`aidg config --new-key` makes a key)")  # fmt: skip
    if s.privacy.id_hash_key == "change-me":
        err.print("[yellow]warning:[/] AIDG_PRIVACY__ID_HASH_KEY is the public default: set your own so the hashed "
                  "merchant ids in the logs cannot be recomputed")  # fmt: skip
    raise typer.Exit(run_workers(host, port, n, shared_slots(s)))


@app.command("stream-worker")
def stream_worker(
    consumer: Annotated[str | None, typer.Option(help="Consumer name in the group (default host-pid).")] = None,
    max_seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    idle_exit: Annotated[float | None, typer.Option(help="Stop after this long without events.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Consume the event bus: join reward parts to decisions exactly once, update the bandit posterior and features."""
    import os
    import signal
    import socket

    from aidg.online.bundle import write_through
    from aidg.online.feature_row import FeatureRow
    from aidg.online.worker import StreamWorker
    from aidg.service.backends import make_backends

    s = cli_settings()
    if s.backend_kinds()["bus"] == "embedded":
        fail("a stream worker needs a shared bus: set AIDG_REDIS_URL (Redis Streams) or AIDG_KAFKA_BOOTSTRAP, with "
             "AIDG_BACKENDS__BUS=redis or kafka")
    with user_errors():
        b = make_backends(s)
        b.bus.ping()

        def on_update(row: FeatureRow, payload: dict[str, Any]) -> None:  # write-through to the shared cache
            write_through(b.cache, row, payload, lambda patched: b.cache.set_many(patched, s.cache.ttl_seconds))

        name = consumer or f"{socket.gethostname()}-{os.getpid()}"
        worker = StreamWorker(b.bus, b.decisions, b.online, s.stream, s.reward, name, on_update)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        err.print(f"stream worker {name} on {s.stream.stream} (group {s.stream.group}); Ctrl-C stops it")
        t0 = time.perf_counter()
        try:
            worker.run(max_seconds=max_seconds, idle_exit_s=idle_exit)
        except KeyboardInterrupt:
            pass
        finally:
            b.close()
    report = {"consumer": name, "messages": worker.messages, "applied": worker.applied,
              "malformed": worker.malformed, "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
    if json_out:
        emit(report)
    else:
        err.print(f"stopped: {report}")
