"""One contract for the online store and the cache backend, in process and in Redis; the cache policy on top."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import redis

from aidg.errors import BackendUnavailableError, ConfigError, DataError, NotFoundError
from aidg.store.arrays import pack_arrays, unpack_arrays
from aidg.store.cache import EmbeddingCache
from aidg.store.online import CacheBackend, OnlineStore
from aidg.store.online_memory import MemoryCacheBackend, MemoryOnlineStore
from aidg.store.online_redis import RedisCacheBackend, RedisOnlineStore
from tests.servers import require_server

REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_URL = "redis://127.0.0.1:1/0"


def _namespace() -> str:
    return f"aidg-test:{uuid.uuid4().hex}"


def _drop_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = list(client.scan_iter(match=namespace.replace("*", "\\*") + ":*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    if request.param == "memory":
        yield MemoryOnlineStore()
        return
    require_server("Redis", "127.0.0.1", 6379)
    namespace = _namespace()
    s = RedisOnlineStore(REDIS_URL, namespace=namespace)
    try:
        yield s
    finally:
        s.close()
        _drop_namespace(namespace)


@dataclass
class Timed:
    """A cache backend with its clock: a fake one in process, real time (and sleeping) for Redis."""

    backend: CacheBackend
    clock: Callable[[], float]
    advance: Callable[[float], None]


@pytest.fixture(params=["memory", "redis"])
def timed(request: pytest.FixtureRequest) -> Iterator[Timed]:
    if request.param == "memory":
        now = [1000.0]

        def advance(seconds: float) -> None:
            now[0] += seconds

        yield Timed(MemoryCacheBackend(clock=lambda: now[0]), lambda: now[0], advance)
        return
    require_server("Redis", "127.0.0.1", 6379)
    namespace = _namespace()
    backend = RedisCacheBackend(REDIS_URL, namespace=namespace)
    try:
        yield Timed(backend, time.monotonic, time.sleep)
    finally:
        backend.close()
        _drop_namespace(namespace)


class CountingLoader:
    """A loader returning ``b"<key>@<version>"`` for every key not in ``absent``, recording each call."""

    def __init__(self, absent: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[str]] = []
        self.version = 0
        self.absent = absent

    def __call__(self, keys: list[str]) -> dict[str, bytes]:
        self.calls.append(list(keys))
        return {k: f"{k}@{self.version}".encode() for k in keys if k not in self.absent}


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _memory_cache(
    loader: CountingLoader, *, refresh_ahead_s: float = 300, keep_warm_s: float = 86_400
) -> tuple[EmbeddingCache, FakeClock]:
    clock = FakeClock()
    backend = MemoryCacheBackend(clock)
    cache = EmbeddingCache(backend, loader, 3600, refresh_ahead_s, keep_warm_s, clock)
    return cache, clock


# --- OnlineStore ---------------------------------------------------------------------------------------------------


def test_store_write_read_delete_count_round_trip(store: OnlineStore) -> None:
    store.ping()
    assert store.count() == 0
    store.write({"m1": b"row-1", "m2": b"\x00\xff binary", "m3": b""})
    assert store.count() == 3
    assert store.read(["m1", "m2", "m3"]) == [b"row-1", b"\x00\xff binary", b""]
    store.write({"m1": b"row-1 v2"})
    assert store.read(["m1"]) == [b"row-1 v2"] and store.count() == 3
    assert store.delete(["m1", "m3", "nope", "m1"]) == 2
    assert store.count() == 1 and store.read(["m1", "m2"]) == [None, b"\x00\xff binary"]
    store.close()
    store.close()  # idempotent


def test_store_read_keeps_order_and_length_with_none_for_misses(store: OnlineStore) -> None:
    store.write({"a": b"A", "b": b"B"})
    assert store.read(["b", "missing", "a", "b", "other"]) == [b"B", None, b"A", b"B", None]
    assert store.read([]) == [] and store.delete([]) == 0
    store.write({})
    assert store.count() == 2


def test_concurrent_updates_of_the_same_rows_lose_no_increment(store: OnlineStore) -> None:
    """Four threads (each a client of its own on Redis) add 1 to two shared counters 50 times each: a plain
    read-then-write loses increments; update loses none."""
    import threading

    store.write({"a": b"0", "b": b"0", "c": b"x"})
    clients = [store] + ([RedisOnlineStore(REDIS_URL, namespace=store.namespace) for _ in range(3)]
                         if isinstance(store, RedisOnlineStore) else [store] * 3)  # fmt: skip

    def bump(s: OnlineStore) -> None:
        for _ in range(50):
            s.update(["a", "b", "missing"], lambda k, old: str(int(old) + 1).encode())

    threads = [threading.Thread(target=bump, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.read(["a", "b", "missing"]) == [b"200", b"200", None]
    # a change that answers None leaves the row, and only written rows come back
    assert store.update(["a", "c"], lambda k, old: None if k == "a" else old + b"y") == {"c": b"xy"}
    assert store.read(["a", "c"]) == [b"200", b"xy"] and store.update([], lambda k, old: old) == {}
    for c in clients[1:]:
        if c is not store:
            c.close()


def test_redis_count_sees_only_its_own_namespace_even_with_glob_characters() -> None:
    require_server("Redis", "127.0.0.1", 6379)
    base = _namespace()
    star, plain = RedisOnlineStore(REDIS_URL, namespace=base + "*"), RedisOnlineStore(REDIS_URL, namespace=base + "x")
    try:
        star.write({"a": b"1"})
        plain.write({"a": b"1", "b": b"2"})
        assert (star.count(), plain.count()) == (1, 2)
    finally:
        star.close()
        plain.close()
        _drop_namespace(base + "*")
        _drop_namespace(base + "x")


# --- CacheBackend --------------------------------------------------------------------------------------------------


def test_cache_values_expire_after_their_ttl(timed: Timed) -> None:
    b = timed.backend
    b.ping()
    b.set_many({"short": b"s", "long": b"l"}, ttl_s=0.2)
    b.set_many({"long": b"l"}, ttl_s=60)
    assert b.get_many(["short", "long", "none"]) == [b"s", b"l", None]
    timed.advance(0.3)
    assert b.get_many(["short", "long"]) == [None, b"l"]
    assert b.ttl("short") is None and b.delete(["short"]) == 0
    assert b.delete(["long", "long"]) == 1 and b.get_many(["long"]) == [None]


def test_cache_ttl_reports_seconds_left_or_none(timed: Timed) -> None:
    b = timed.backend
    b.set_many({"k": b"v"}, ttl_s=10)
    left = b.ttl("k")
    assert left is not None and 9.0 < left <= 10.0
    assert b.ttl("absent") is None
    assert b.get_many([]) == [] and b.delete([]) == 0
    with pytest.raises(ConfigError, match="ttl_s must be positive"):
        b.set_many({"k": b"v"}, ttl_s=0)


def test_memory_cache_purges_expired_entries_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    b = MemoryCacheBackend(clock, purge_every=10)
    for i in range(1000):
        b.set_many({f"k{i}": b"v"}, ttl_s=5)
        clock.now += 1
    assert len(b) <= 25


# --- EmbeddingCache on each backend --------------------------------------------------------------------------------


def test_embedding_cache_counts_hits_and_misses(timed: Timed) -> None:
    loader = CountingLoader()
    cache = EmbeddingCache(timed.backend, loader, ttl_s=60, refresh_ahead_s=5, clock=timed.clock)
    assert cache.stats.hit_rate == 0.0
    assert cache.get("m1") == b"m1@0" and cache.get("m1") == b"m1@0" and cache.get("m2") == b"m2@0"
    s = cache.stats
    assert (s.hits, s.misses, s.refreshes) == (1, 2, 0) and s.hit_rate == pytest.approx(1 / 3)
    assert loader.calls == [["m1"], ["m2"]]
    left = timed.backend.ttl("m1")
    assert left is not None and 55 < left <= 60
    cache.reset_stats()
    assert cache.stats.hits == 0 and cache.get("m1") == b"m1@0" and cache.stats.hit_rate == 1.0


def test_a_key_the_loader_does_not_return_is_not_found(timed: Timed) -> None:
    loader = CountingLoader(absent=frozenset({"ghost"}))
    cache = EmbeddingCache(timed.backend, loader, ttl_s=60, refresh_ahead_s=5, clock=timed.clock)
    with pytest.raises(NotFoundError, match="'ghost'"):
        cache.get("ghost")
    with pytest.raises(NotFoundError, match="'ghost'"):
        cache.get_many(["a", "ghost"])
    assert timed.backend.get_many(["a", "ghost"]) == [b"a@0", None]  # what was found is stored


def test_get_many_makes_one_loader_call_for_all_misses(timed: Timed) -> None:
    loader = CountingLoader()
    cache = EmbeddingCache(timed.backend, loader, ttl_s=60, refresh_ahead_s=5, clock=timed.clock)
    cache.get("b")
    out = cache.get_many(["a", "b", "c", "a", "d"])
    assert out == [b"a@0", b"b@0", b"c@0", b"a@0", b"d@0"]
    assert loader.calls == [["b"], ["a", "c", "d"]]
    assert cache.get_many([]) == [] and len(loader.calls) == 2
    assert cache.get_many(["d", "c"]) == [b"d@0", b"c@0"] and len(loader.calls) == 2


def test_a_put_replaces_the_value_and_invalidate_removes_it(timed: Timed) -> None:
    loader = CountingLoader()
    cache = EmbeddingCache(timed.backend, loader, ttl_s=60, refresh_ahead_s=5, clock=timed.clock)
    assert cache.get("k") == b"k@0"
    cache.put({"k": b"updated"})
    assert cache.get("k") == b"updated"
    assert cache.invalidate(["k", "never"]) == 1
    loader.version = 1
    assert cache.get("k") == b"k@1"


def test_a_lost_entry_is_a_miss_whatever_the_bookkeeping_says(timed: Timed) -> None:
    loader = CountingLoader()
    cache = EmbeddingCache(timed.backend, loader, ttl_s=60, refresh_ahead_s=5, clock=timed.clock)
    cache.get("k")
    timed.backend.delete(["k"])  # evicted or lost behind the cache's back
    loader.version = 1
    assert cache.get("k") == b"k@1" and cache.stats.misses == 2


# --- refresh-ahead (in process, fake clock) ------------------------------------------------------------------------


def test_refresh_due_reloads_only_due_and_recently_read_keys() -> None:
    loader = CountingLoader()
    cache, clock = _memory_cache(loader, keep_warm_s=1800)
    cache.get_many(["warm", "cold"])  # t=0: both stored until 3600
    clock.now = 2000.0
    cache.get("warm")  # read again; "cold" was last read at 0
    clock.now = 2500.0
    cache.get("fresh")  # stored until 6100
    cache.put({"written": b"w"})  # stored until 6100, never read
    loader.calls.clear()
    clock.now = 3400.0  # warm and cold expire within 300 s; cold was not read within 1800 s
    assert cache.refresh_due() == 1 and loader.calls == [["warm"]] and cache.stats.refreshes == 1
    assert cache.tracked_keys == 3  # cold forgotten: warm, fresh, written
    clock.now = 10_000.0
    assert cache.refresh_due() == 0 and cache.tracked_keys == 0  # nothing read within keep_warm_s


def test_refresh_ahead_keeps_a_warm_key_hitting_across_several_ttls() -> None:
    loader = CountingLoader()
    cache, clock = _memory_cache(loader)
    cache.get("hot")
    cache.reset_stats()
    for step in range(1, 6 * 60 + 1):  # six TTLs, the refresher every 60 s, a read every 10 min
        clock.now = step * 60.0
        cache.refresh_due()
        if step % 10 == 0:
            loader.version = step
            assert cache.get("hot").startswith(b"hot@")
    s = cache.stats
    assert s.hit_rate == 1.0 and s.misses == 0 and s.evictions_expired == 0
    assert 6 <= s.refreshes <= 7  # one reload per TTL, ~300 s before expiry
    assert cache.get("hot") != b"hot@0"  # served values are reloaded, not kept past ttl_s


def test_pure_ttl_misses_after_expiry() -> None:
    loader = CountingLoader()
    cache, clock = _memory_cache(loader, refresh_ahead_s=0)
    cache.get("k")
    clock.now = 3500.0
    assert cache.refresh_due() == 0 and cache.get("k") == b"k@0"
    clock.now = 3600.0
    loader.version = 1
    assert cache.get("k") == b"k@1"
    s = cache.stats
    assert (s.hits, s.misses, s.refreshes, s.evictions_expired) == (1, 2, 0, 1)


def test_a_loader_result_fetched_before_a_put_does_not_overwrite_it() -> None:
    cache: EmbeddingCache

    def loader(keys: list[str]) -> dict[str, bytes]:
        cache.put({"k": b"new"})  # an update lands while the loader reads the old value
        return {"k": b"old"}

    cache, _ = _memory_cache(CountingLoader())
    cache._loader = loader
    assert cache.get("k") == b"old"
    assert cache.get("k") == b"new"


def test_the_refresher_thread_refreshes_and_stops() -> None:
    loader = CountingLoader()
    cache = EmbeddingCache(MemoryCacheBackend(), loader, ttl_s=0.4, refresh_ahead_s=0.3, keep_warm_s=60)
    with pytest.raises(ConfigError, match="interval_s"):
        cache.start_refresher(0.3)
    cache.get("k")
    cache.start_refresher(0.02)
    cache.start_refresher(0.02)  # idempotent
    assert sum(t.name == "aidg-cache-refresher" for t in threading.enumerate()) == 1
    deadline = time.monotonic() + 5
    while cache.stats.refreshes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    cache.stop()
    cache.stop()
    assert cache.stats.refreshes >= 1
    assert not any(t.name == "aidg-cache-refresher" for t in threading.enumerate())


def test_bad_cache_settings_are_refused() -> None:
    for kwargs in ({"ttl_s": 0}, {"refresh_ahead_s": 3600}, {"refresh_ahead_s": -1}, {"keep_warm_s": 0}):
        with pytest.raises(ConfigError):
            EmbeddingCache(MemoryCacheBackend(), CountingLoader(), **kwargs)  # type: ignore[arg-type]


# --- Redis down ----------------------------------------------------------------------------------------------------


def test_an_unreachable_redis_raises_backend_unavailable_naming_the_url() -> None:
    store, cache = RedisOnlineStore(CLOSED_URL), RedisCacheBackend(CLOSED_URL)
    calls: list[Callable[[], object]] = [
        store.ping, lambda: store.read(["a"]), lambda: store.write({"a": b"1"}), store.count,
        lambda: store.delete(["a"]), cache.ping, lambda: cache.get_many(["a"]),
        lambda: cache.set_many({"a": b"1"}, 1.0), lambda: cache.ttl("a"),
    ]  # fmt: skip
    try:
        for call in calls:
            with pytest.raises(BackendUnavailableError, match=re.escape(CLOSED_URL)) as info:
                call()
            assert "start Redis or unset AIDG_REDIS_URL" in str(info.value)
    finally:
        store.close()
        cache.close()
    secret = RedisOnlineStore("redis://user:hunter2@127.0.0.1:1/0")
    with pytest.raises(BackendUnavailableError) as info:
        secret.ping()
    secret.close()
    assert "hunter2" not in str(info.value) and "user:***@127.0.0.1:1" in str(info.value)


# --- arrays --------------------------------------------------------------------------------------------------------


def _sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "emb": rng.standard_normal((3, 8)).astype(np.float32),
        "f64": rng.standard_normal(5),
        "ids": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "scalar": np.array(2.5),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "strided": np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2],
        "last": np.array([1.0, 2.0]),
    }


def test_pack_unpack_round_trips_dtype_shape_and_values() -> None:
    arrays = _sample()
    meta, back = unpack_arrays(pack_arrays({"version": 2, "names": ["a", "b"]}, arrays))
    assert meta == {"version": 2, "names": ["a", "b"]} and list(back) == list(arrays)
    for name, arr in arrays.items():
        assert back[name].dtype == arr.dtype and back[name].shape == arr.shape, name
        np.testing.assert_array_equal(back[name], arr)
    assert unpack_arrays(pack_arrays({}, {})) == ({}, {})


def test_corrupt_or_unsafe_blobs_raise_data_error() -> None:
    blob = pack_arrays({"v": 1}, _sample())
    for n in range(len(blob)):
        with pytest.raises(DataError):
            unpack_arrays(blob[:n])
    header_len = int.from_bytes(blob[8:12], "little")
    for i in range(12 + header_len):
        for byte in (0x00, 0x22, 0x5D, 0x39, 0xFF):
            with contextlib.suppress(DataError):  # a mutation may still parse; anything else is a bug
                unpack_arrays(blob[:i] + bytes([byte]) + blob[i + 1 :])
    with pytest.raises(DataError, match="object"):
        pack_arrays({}, {"o": np.array([object()])})
    with pytest.raises(DataError, match="JSON"):
        pack_arrays({"bad": object()}, {})
    forged = pack_arrays({}, {"x": np.zeros(2)}).replace(b'"<f8"', b'"|O8"')
    with pytest.raises(DataError, match="only boolean and numeric"):
        unpack_arrays(forged)
    with pytest.raises(DataError, match="version"):
        unpack_arrays(blob[:4] + b"\x09" + blob[5:])


def test_scan_lists_keys_by_glob_with_literal_glob_characters(store: OnlineStore, timed: Timed) -> None:
    from aidg.privacy.ids import glob_escape

    store.write({"v1/m-1": b"a", "v2/m-1": b"b", "v1/m-10": b"c", "v1/m*[x]": b"d"})
    assert sorted(store.scan("*/m-1")) == ["v1/m-1", "v2/m-1"]  # not m-10
    assert store.scan(f"*/{glob_escape('m*[x]')}") == ["v1/m*[x]"]
    timed.backend.set_many({"v1/m-1|2026-01-01|50": b"x", "v1/m-2|2026-01-01|50": b"y"}, 60)
    assert timed.backend.scan("*/m-1|*") == ["v1/m-1|2026-01-01|50"]


def test_after_a_redis_failure_calls_fail_at_once_for_a_second_then_try_again() -> None:
    s = RedisOnlineStore("redis://127.0.0.1:1/0", namespace="aidg-breaker")
    calls: list[int] = []
    real = s._client.mget

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    s._client.mget = counting  # type: ignore[method-assign]
    with pytest.raises(BackendUnavailableError, match="AIDG_REDIS_URL"):
        s.read(["k"])
    assert len(calls) == 1
    t = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match="tried again within a second"):
        s.read(["k"])  # the breaker is open: Redis is not asked
    assert len(calls) == 1 and time.perf_counter() - t < 0.05
    s._breaker._until = 0.0  # the second has passed
    with pytest.raises(BackendUnavailableError):
        s.read(["k"])
    assert len(calls) == 2
    s.close()


def test_a_dropped_redis_connection_is_retried_transparently() -> None:
    """Redis closes our connection (a restart, an idle timeout): the next call reconnects and succeeds."""
    require_server("Redis", "127.0.0.1", 6379)
    s = RedisOnlineStore(REDIS_URL, namespace=f"aidg-retry-{uuid.uuid4().hex[:8]}")
    try:
        s.write({"k": b"v"})
        own = s._client.client_id()
        admin = redis.Redis.from_url(REDIS_URL)
        assert admin.client_kill_filter(_id=own) == 1  # only our own connection, by its id
        admin.close()
        assert s.read(["k"]) == [b"v"]  # no BackendUnavailableError: the retry reconnected
        assert s._client.client_id() != own
    finally:
        s.delete(["k"])
        s.close()


def test_a_flapping_redis_gets_two_retries_with_short_backoff_then_fails() -> None:
    """A server that accepts and drops every connection: 1 try + 2 retries (jittered backoff ≤ 100 ms), then a
    clear error, not redis-py's default of 3 retries with backoff up to 10 s holding the request."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[float] = []
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(time.perf_counter())
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    s = RedisOnlineStore(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", namespace="aidg-flap")
    try:
        with pytest.raises(BackendUnavailableError, match="AIDG_REDIS_URL"):
            s.read(["k"])
        time.sleep(0.2)
        assert len(accepted) == 3, accepted
        gaps = np.diff(accepted)
        assert (gaps < 0.5).all(), gaps  # the backoff is capped at 100 ms (+ connection set-up)
    finally:
        done.set()
        t.join(2)
        listener.close()
        s.close()
