"""The policy state every process serving a model must share: the conservative gate's budget and the exploration share.

Each replica (and each worker process) runs its own
:class:`~aidg.policy.risk_aware.RiskAwarePolicy`. Left alone, each would keep
its own gate budget and draw its own exploration share, so "cumulative reward
≥ (1 − α) × the current system's" and "explore on at most the exploration
rate of requests" would hold per process, not per marketplace. Here both live
in one shared :class:`State` per served model, changed only in atomic steps:

- **with Redis** (:class:`RedisState`, every replica on the same server and
  namespace): one hash ``<AIDG_REDIS_NAMESPACE>:policy:<model namespace>``
  changed only by Lua scripts, so each check and its update are one step on
  the server whichever replica sends it;
- **without Redis, the workers of one** ``aidg serve --workers N``
  (:class:`WorkerState`): one row of an array in shared memory that the parent
  makes before it starts the workers, changed under the array's lock.

The steps:

- **admit** (:meth:`SharedGate.admit`): the gate's check ``budget + lcb −
  (1 − α) b ≥ 0`` and, when it passes, the policy round's ``lcb − (1 − α) b``
  added to the budget. A refused round plays the current deal, whose ``α b``
  the caller adds with :meth:`SharedGate.record` (a reader in between sees the
  smaller budget: the safe side);
- **explore** (:meth:`SharedExploration.allows_exploration`): the request
  counter + 1 and, while the admissions are under ``rate × requests``, one
  more admission. A quota instead of a draw: over any split of the traffic
  the admissions are those one process would make.

Every step returns its sequence number (the gate's rounds, the exploration's
requests), and the decision logs it with the step's inputs
(:meth:`SharedGate.trace`, the payload's ``shared_state``), so the log replays
in the order the steps were applied. If Redis does not answer, the gate
refuses (the current deal is played) and nothing explores: the guarantee
holds, at the cost of the gain. Separate ``aidg serve`` processes without
Redis share nothing (each is its own replica): run replicas on Redis.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Protocol

from aidg.config import ExplorationSettings, Settings
from aidg.errors import ConfigError, DataError, redact
from aidg.extras import require
from aidg.policy.guard import ExplorationManager

log = logging.getLogger("aidg.service.shared_state")

# KEYS[1] the hash; ARGV lcb, b, alpha. Returns {admitted (1/0), the round's number}.
ADMIT_LUA = """
local lcb, b, alpha = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budget = tonumber(redis.call('HGET', KEYS[1], 'budget') or '0')
local seq = redis.call('HINCRBY', KEYS[1], 'rounds', 1)
if budget + lcb - (1 - alpha) * b >= 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'budget', string.format('%.17g', lcb - (1 - alpha) * b))
  return {1, seq}
end
redis.call('HINCRBY', KEYS[1], 'refused', 1)
return {0, seq}
"""
# KEYS[1] the hash; ARGV the round's value and b, alpha, and whether it is a new round (0: the refused one's
# baseline, already counted by ADMIT). Returns the round's number.
RECORD_LUA = """
local value, b, alpha = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('HINCRBYFLOAT', KEYS[1], 'budget', string.format('%.17g', value - (1 - alpha) * b))
if ARGV[4] == '1' then return redis.call('HINCRBY', KEYS[1], 'rounds', 1) end
return tonumber(redis.call('HGET', KEYS[1], 'rounds') or '0')
"""
# KEYS[1] the hash; ARGV the rate. Returns {admitted (1/0), the request's number}.
EXPLORE_LUA = """
local rate = tonumber(ARGV[1])
local n = redis.call('HINCRBY', KEYS[1], 'explore_requests', 1)
local k = tonumber(redis.call('HGET', KEYS[1], 'explore_admitted') or '0')
if k < rate * n then
  redis.call('HINCRBY', KEYS[1], 'explore_admitted', 1)
  return {1, n}
end
return {0, n}
"""


class RedisState:
    """The atomic steps on one served model's hash in Redis (the Lua scripts above); None when Redis does not
    answer (logged once per outage)."""

    def __init__(self, url: str, key: str, client: Any = None) -> None:
        redis = require("redis", "the policy state shared in Redis")
        self.url, self.key = url, key
        try:
            self.client = client or redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {redact(url)!r}: {exc} (expected redis://host:port/db)") from None
        self._admit = self.client.register_script(ADMIT_LUA)
        self._record = self.client.register_script(RECORD_LUA)
        self._explore = self.client.register_script(EXPLORE_LUA)
        self.down = False
        self.failures = 0

    def _call(self, script: Any, args: list[Any]) -> Any:
        import redis.exceptions

        try:
            out = script(keys=[self.key], args=args)
        except (redis.exceptions.RedisError, OSError) as exc:
            self.failures += 1
            if not self.down:
                self.down = True
                log.warning("policy state: Redis at %s did not answer (%s); no policy round nor exploration "
                            "until it does", redact(self.url), exc)  # fmt: skip
            return None
        if self.down:
            self.down = False
            log.warning("policy state: Redis at %s answers again", redact(self.url))
        return out

    def admit(self, lcb: float, b: float, alpha: float) -> tuple[bool, int] | None:
        out = self._call(self._admit, [repr(float(lcb)), repr(float(b)), repr(alpha)])
        return None if out is None else (bool(int(out[0])), int(out[1]))

    def record(self, value: float, b: float, alpha: float, new_round: bool) -> int | None:
        out = self._call(self._record, [repr(float(value)), repr(float(b)), repr(alpha), "1" if new_round else "0"])
        return None if out is None else int(out)

    def explore(self, rate: float) -> tuple[bool, int] | None:
        out = self._call(self._explore, [repr(float(rate))])
        return None if out is None else (bool(int(out[0])), int(out[1]))

    def state(self) -> dict[str, float]:
        """The hash as numbers (``budget``, ``rounds``, ``refused``, ``explore_requests``, ``explore_admitted``)."""
        return {k.decode(): float(v) for k, v in self.client.hgetall(self.key).items()}


FIELDS = ("budget", "rounds", "refused", "explore_requests", "explore_admitted")
SLOTS = 32  # models one `aidg serve` may serve over its life (champion, challengers), each a row of the array
_ROW = 1 + len(FIELDS)  # the model's tag, then its fields


class SlotsFullError(Exception):
    """Every row of the workers' array belongs to a model already."""


def worker_array(ctx: Any) -> Any:
    """The array the parent ``aidg serve`` hands its workers (``ctx``: its multiprocessing context)."""
    return ctx.Array("d", SLOTS * _ROW)


class WorkerState:
    """The same steps on an array in shared memory (``worker_array``) under its lock: the workers of one
    ``aidg serve`` without Redis share one gate budget and one exploration quota. A model takes the first free
    row (its tag: 48 bits of a hash of its namespace, exact in a float)."""

    def __init__(self, array: Any, model_namespace: str) -> None:
        self.array = array
        tag = float(int.from_bytes(hashlib.blake2b(model_namespace.encode(), digest_size=6).digest(), "big") or 1)
        with array.get_lock():
            rows = [array[i * _ROW] for i in range(SLOTS)]
            if tag in rows:
                self.row = rows.index(tag)
            elif 0.0 in rows:
                self.row = rows.index(0.0)
                array[self.row * _ROW] = tag
            else:
                raise SlotsFullError(f"this aidg serve has served {SLOTS} models")
        self.base = self.row * _ROW + 1

    def _get(self, name: str) -> float:
        return float(self.array[self.base + FIELDS.index(name)])

    def _add(self, name: str, value: float) -> float:
        i = self.base + FIELDS.index(name)
        self.array[i] += value
        return float(self.array[i])

    def admit(self, lcb: float, b: float, alpha: float) -> tuple[bool, int] | None:
        with self.array.get_lock():
            seq = int(self._add("rounds", 1))
            if self._get("budget") + lcb - (1 - alpha) * b >= 0:
                self._add("budget", lcb - (1 - alpha) * b)
                return True, seq
            self._add("refused", 1)
            return False, seq

    def record(self, value: float, b: float, alpha: float, new_round: bool) -> int | None:
        with self.array.get_lock():
            self._add("budget", value - (1 - alpha) * b)
            return int(self._add("rounds", 1) if new_round else self._get("rounds"))

    def explore(self, rate: float) -> tuple[bool, int] | None:
        with self.array.get_lock():
            n = int(self._add("explore_requests", 1))
            ok = self._get("explore_admitted") < rate * n
            if ok:
                self._add("explore_admitted", 1)
            return ok, n

    def state(self) -> dict[str, float]:
        with self.array.get_lock():
            return {f: self._get(f) for f in FIELDS}


class State(Protocol):
    def admit(self, lcb: float, b: float, alpha: float) -> tuple[bool, int] | None: ...

    def record(self, value: float, b: float, alpha: float, new_round: bool) -> int | None: ...

    def explore(self, rate: float) -> tuple[bool, int] | None: ...

    def state(self) -> dict[str, float]: ...


class SharedGate:
    """The conservative gate (:class:`~aidg.policy.conservative.ConservativeGate`'s interface) on a shared
    :class:`State`. Rounds are not settled with realised rewards here (a replica releases its decisions; the lower
    bounds stay counted, as the in-process gate of a replica does)."""

    def __init__(self, state: State, alpha: float) -> None:
        if not 0 < alpha < 1:
            raise DataError(f"alpha is a share in (0, 1), got {alpha}")
        self.state, self.alpha = state, alpha
        self._traces: dict[str, dict[str, Any]] = {}  # decision -> what the gate did for it, until trace() takes it

    def admit(self, decision_id: str, lcb: float, baseline: float) -> bool:
        out = self.state.admit(lcb, baseline, self.alpha)
        ok, seq = (False, None) if out is None else out  # no shared budget to check: the current deal
        self._traces[decision_id] = {"lcb": lcb, "baseline": baseline, "admitted": ok, "seq": seq}
        return ok

    def record(self, decision_id: str, played: str, value: float, baseline: float) -> None:
        if played not in ("policy", "baseline"):
            raise DataError(f"played is 'policy' or 'baseline', got {played!r}")
        refused = self._traces.get(decision_id)
        if refused is not None and not refused["admitted"]:  # admit counted its round: add the baseline's α b
            if refused["seq"] is not None:  # (unless the state did not answer the admit: nothing to add to)
                self.state.record(value, baseline, self.alpha, new_round=False)
            return
        seq = self.state.record(value, baseline, self.alpha, new_round=True)
        self._traces[decision_id] = {"lcb": None, "baseline": baseline, "admitted": False, "seq": seq}

    def trace(self, decision_id: str) -> dict[str, Any] | None:
        """What the gate did for a decision (its inputs, whether it admitted, the round's number), once."""
        return self._traces.pop(decision_id, None)

    def forget(self, decision_id: str) -> None:
        return None

    def settle(self, decision_id: str, reward: float) -> bool:
        return False


class SharedExploration(ExplorationManager):
    """The exploration share as a quota over every process's requests (:class:`ExplorationManager`'s rate, adapted
    by each replica's monitor from the shared KPIs; the admissions counted in the shared :class:`State`)."""

    def __init__(self, settings: ExplorationSettings, state: State) -> None:
        super().__init__(settings)
        self.state = state
        self.last: dict[str, Any] = {}

    def allows_exploration(self, u: float) -> bool:
        out = self.state.explore(self.rate)
        ok, seq = (False, None) if out is None else out
        self.last = {"rate": self.rate, "admitted": ok, "seq": seq}
        return ok


_worker_array: Any = None  # set in each `aidg serve` worker (share_across_workers)


def share_across_workers(array: Any) -> None:
    """Use ``array`` (:func:`worker_array`, made by the parent ``aidg serve``) for the policy state of every model
    this worker serves without Redis."""
    global _worker_array
    _worker_array = array


def shared_state(settings: Settings, model_namespace: str) -> State | None:
    """The shared policy state of a served model: in Redis with the Redis store, in the workers' shared memory
    under a multi-worker ``aidg serve``, else None (one process: the policy's own gate and exploration)."""
    if settings.backend_kinds()["store"] == "redis" and settings.redis_url:
        return RedisState(settings.redis_url, shared_key(settings.redis_namespace, model_namespace))
    if _worker_array is not None:
        try:
            return WorkerState(_worker_array, model_namespace)
        except SlotsFullError as exc:
            log.warning("policy state: %s; model %s keeps its gate and exploration per worker until a restart",
                        exc, model_namespace)  # fmt: skip
    return None


def shared_key(namespace: str, model_namespace: str) -> str:
    """The hash of one served model's shared policy state."""
    return f"{namespace}:policy:{model_namespace}"


__all__ = [
    "ADMIT_LUA", "EXPLORE_LUA", "RECORD_LUA", "RedisState", "SharedExploration", "SharedGate", "State", "WorkerState",
    "share_across_workers", "shared_key", "shared_state", "worker_array",
]  # fmt: skip
