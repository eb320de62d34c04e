"""A simulated client for the demo: merchant managers asking for deals, and the world answering, through the API.

Each round it asks ``POST /v1/deals/generate`` for a merchant (Zipf-popular),
then lets the simulator's oracle decide what happens to the chosen deal, as
the policy arena does: the MM approves with the true approval probability,
the rep edits it with the rep's true override probability, and an approved
deal converts and earns its GP30 with noise around the true expectations.
The answers come back as ``POST /v1/feedback`` events with the delays
compressed (approval and override at once, conversion after
``conversion_delay_s``, the GP30 after ``gp30_delay_s``: "30 days" in seconds),
so the stream worker joins them and the posterior moves while you watch.
Bounded by ``rounds`` and ``seconds``; loopback only.
"""

from __future__ import annotations

import heapq
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from aidg.domain import DEAL_TERMS
from aidg.sim import Oracle, World


@dataclass
class TrafficStats:
    decisions: int = 0
    events: int = 0
    errors: int = 0
    approved: int = 0
    overridden: int = 0
    chose_current: int = 0
    non_personalized: int = 0  # answers for merchants without personalization consent (no decision logged)
    latency_ms: list[float] = field(default_factory=list)
    arms: dict[str, int] = field(default_factory=dict)  # decisions per rollout arm

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms[-2000:]) if self.latency_ms else np.zeros(1)
        return {
            "decisions": self.decisions,
            "feedback_events": self.events,
            "errors": self.errors,
            "approval_rate": round(self.approved / max(self.decisions, 1), 3),
            "override_rate": round(self.overridden / max(self.decisions, 1), 3),
            "current_deal_share": round(self.chose_current / max(self.decisions, 1), 3),
            "non_personalized": self.non_personalized,
            "generate_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "generate_p99_ms": round(float(np.percentile(lat, 99)), 2),
            "arms": dict(self.arms),
        }


class SimulatedClient:
    """Drives generate + feedback traffic against a running service (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        world: World,
        merchants: list[str],
        api_key: str | None = None,
        rate: float = 5.0,
        conversion_delay_s: float = 1.0,
        gp30_delay_s: float = 3.0,
        seed: int = 0,
        on_answer: Callable[[dict[str, Any], float], None] | None = None,
    ) -> None:
        if not merchants:
            raise ValueError("the simulated client needs at least one merchant")
        self.base_url, self.rate = base_url.rstrip("/"), rate
        self.oracle = Oracle(world)
        self.at = world.as_of
        self.merchants = merchants
        self.delays = (conversion_delay_s, gp30_delay_s)
        self.rng = np.random.default_rng(seed)
        k = np.arange(1, len(merchants) + 1)
        self.p = (1 / k) / (1 / k).sum()  # Zipf(1): a few merchants ask often, most rarely
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.on_answer = on_answer  # every decision as it came back, with the time.monotonic() it arrived
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._later: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = 0

    def stop(self) -> None:
        self._stop.set()

    def _outcome(self, merchant: str, chosen: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
        terms = pd.DataFrame([{k: chosen[k] for k in DEAL_TERMS}])
        t = self.oracle.evaluate([merchant], terms, self.at).iloc[0]
        approved = bool(self.rng.random() < t.approval_prob)
        severity = float(t.override_severity) if self.rng.random() < t.override_prob else 0.0
        self.stats.approved += approved
        self.stats.overridden += severity > 0
        out = [(0.0, {"kind": "approval", "approved": approved}), (0.0, {"kind": "override", "value": severity})]
        if approved:
            conv = float(np.clip(t.conversion * np.exp(self.rng.normal(0, 0.2)), 0, 1))
            gp = float((1 + t.expected_uplift) * np.exp(self.rng.normal(-0.045, 0.3)) - 1)
            out += [
                (self.delays[0], {"kind": "conversion", "value": conv}),
                (self.delays[1], {"kind": "gp30", "value": gp}),
            ]
        return out

    def run(
        self, rounds: int = 1_000_000, seconds: float = 3600.0, report: Callable[[dict[str, Any]], None] | None = None,
        report_every_s: float = 5.0,
    ) -> TrafficStats:  # fmt: skip
        """Send traffic until ``rounds`` decisions, ``seconds`` or :meth:`stop`; ``report`` gets summaries."""
        start = time.monotonic()
        next_report = start + report_every_s
        with httpx.Client(base_url=self.base_url, headers=self.headers, timeout=10.0) as http:
            for _ in range(rounds):
                now = time.monotonic()
                if self._stop.is_set() or now - start > seconds:
                    break
                self._flush(http, now)
                merchant = str(self.rng.choice(self.merchants, p=self.p))
                t0 = time.perf_counter()
                try:
                    r = http.post("/v1/deals/generate", json={"merchant_id": merchant})
                except httpx.HTTPError:
                    self.stats.errors += 1
                    self._stop.wait(1.0)
                    continue
                self.stats.latency_ms.append((time.perf_counter() - t0) * 1e3)
                if r.status_code != 200:
                    self.stats.errors += 1
                    continue
                d = r.json()
                if d.get("decision_id") is None:  # no personalization consent: nothing logged, nothing to answer
                    self.stats.non_personalized += 1
                    continue
                if self.on_answer is not None:
                    self.on_answer(d, time.monotonic())
                self.stats.decisions += 1
                arm = str(d.get("rollout_arm", "champion"))
                self.stats.arms[arm] = self.stats.arms.get(arm, 0) + 1
                self.stats.chose_current += d["chosen"]["type"] == "current"
                for delay, event in self._outcome(merchant, d["chosen"]):
                    body = {"event_id": uuid.uuid4().hex, "decision_id": d["decision_id"], **event}
                    heapq.heappush(self._later, (now + delay, self._seq, body))
                    self._seq += 1
                if report is not None and now >= next_report:
                    report(self.stats.summary())
                    next_report = now + report_every_s
                self._stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - now)))
            self._flush(http, float("inf"))
        return self.stats

    def _flush(self, http: httpx.Client, now: float) -> None:
        """Send the feedback that is due, as one batch."""
        due = []
        while self._later and self._later[0][0] <= now:
            due.append(heapq.heappop(self._later)[2])
        if not due:
            return
        try:
            r = http.post("/v1/feedback", json={"events": due})
            self.stats.events += len(due) if r.status_code == 200 else 0
            self.stats.errors += r.status_code != 200
        except httpx.HTTPError:
            self.stats.errors += 1


__all__ = ["SimulatedClient", "TrafficStats"]
