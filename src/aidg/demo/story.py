"""The demo's rollout story, told through the running service's admin API in accelerated simulated time.

1. The champion is the existing system (a ``current_system`` version: every
   merchant keeps the current deal). AIDG's trained model is the challenger:
   shadow until the promotion gate's DR lower bound beats the champion's, then
   A/B (5 % personalization, 10 % exploration), the ramp (+10 % a step) and
   full traffic; then it is promoted.
2. A deliberately bad challenger (the same model with its GP30 head
   sign-flipped) is shadowed; the gate refuses it and says by how much; an
   admin forces it into A/B as a rollback drill (10 % of its requests fail on
   purpose), and the monitor rolls it back on its own. The trigger →
   traffic-fully-on-champion time is measured from the answers the simulated
   clients received. (The sign flip alone costs only about a tenth of GP30:
   the conservative gate keeps most of a new model's answers on the current
   deal, under the 20 % trigger; the drill makes the rollback certain.)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

Say = Callable[..., None]


class StoryError(RuntimeError):
    """The story could not go on (the service refused or a step timed out); the message says where."""


class Answers:
    """The decisions simulated clients received, newest 200,000: (wall time, arm, model version)."""

    def __init__(self) -> None:
        self.rows: deque[tuple[float, str, str]] = deque(maxlen=200_000)

    def __call__(self, d: dict[str, Any], _: float) -> None:
        self.rows.append((time.time(), str(d.get("rollout_arm")), str(d.get("model_version"))))

    def challenger_after(self, t: float) -> list[float]:
        return [w for w, arm, _ in list(self.rows) if w >= t and arm != "champion"]


class Story:
    def __init__(self, url: str, admin_key: str, answers: Answers, say: Say, timeout_s: float = 300.0) -> None:
        self.http = httpx.Client(base_url=url, headers={"X-API-Key": admin_key}, timeout=60.0)
        self.answers, self.say = answers, say
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout_s
        self.timeline: list[dict[str, Any]] = []

    def _mark(self, what: str, **extra: Any) -> None:
        self.timeline.append({"t_s": round(time.monotonic() - self.t0, 1), "event": what, **extra})

    def act(self, action: str, reason: str, **body: Any) -> tuple[int, dict[str, Any]]:
        r = self.http.post(f"/v1/rollout/{action}", json={"reason": reason, **body})
        return r.status_code, dict(r.json())

    def must(self, action: str, reason: str, **body: Any) -> dict[str, Any]:
        code, out = self.act(action, reason, **body)
        if code != 200:
            raise StoryError(f"{action}: {code} {out.get('message', out)}")
        return out

    def state(self) -> dict[str, Any]:
        return dict(self.http.get("/v1/rollout").json())

    def wait(self, what: str, pred: Callable[[dict[str, Any]], bool], limit_s: float) -> dict[str, Any]:
        end = min(time.monotonic() + limit_s, self.deadline)
        while time.monotonic() < end:
            st = self.state()
            if pred(st):
                return st
            time.sleep(0.5)
        raise StoryError(f"timed out waiting for {what}")

    # -- the two rollouts ----------------------------------------------------------------------------------------
    def good(self, challenger: str) -> None:
        self.say(f"[bold]1.[/] challenger v{challenger} (AIDG) against the existing system: shadow first")
        self.must("start", "AIDG's trained model against the existing system", challenger=challenger)
        self.wait("the challenger to load", lambda s: s["challenger_loaded"], 180)
        self._mark("shadow", version=challenger)
        while True:
            time.sleep(4.0)
            code, out = self.act("advance", "shadow done: the promotion gate decides")
            if code == 200:
                g = out["gate"]
                self.say(f"   gate [green]passed[/]: {g['reason']}")
                self._mark("gate passed → A/B", **{k: g[k] for k in ("challenger_lower", "champion_lower", "n")})
                break
            self.say(f"   gate not yet: {out.get('message')}")
            if time.monotonic() > self.deadline - 120:
                raise StoryError(f"the gate kept refusing the good challenger: {out.get('message')}")
        last: float | None = None
        while True:
            def moved(s: dict[str, Any], seen: float | None = last) -> bool:
                return bool(s["state"] != "ab" or s["challenger_share"] != seen)

            st = self.wait("the ramp to finish", moved, 120)
            if st["challenger_share"] != last:
                last = st["challenger_share"]
                self.say(f"   {st['state']:<5} challenger share {last:.0%}")
                self._mark(st["state"], challenger_share=last)
            if st["state"] == "full":
                break
            if st["state"] not in ("ab", "ramp"):
                raise StoryError(f"the good challenger left the rollout: {st['state']} ({st['transitions'][0]})")
            time.sleep(0.5)
        self.must("promote", "full traffic without a trigger: promote")
        self.say(f"   [green]promoted[/]: v{challenger} is the champion")
        self._mark("promoted", version=challenger)

    def bad(self, challenger: str, drill: float = 0.10) -> dict[str, Any]:
        self.say(f"[bold]2.[/] challenger v{challenger}: the same model with its GP30 head sign-flipped, as a rollback "
                 f"drill ({drill:.0%} of its live requests fail on purpose)")  # fmt: skip
        self.must("start", "a deliberately bad model (GP30 head sign-flipped), as a rollback drill",
                  challenger=challenger, drill_fault_rate=drill)  # fmt: skip
        self.wait("the bad challenger to load", lambda s: s["challenger_loaded"], 180)
        self._mark("shadow", version=challenger)
        refusal = None
        for _ in range(15):
            time.sleep(4.0)
            code, out = self.act("advance", "shadow done: the promotion gate decides")
            msg = str(out.get("message"))
            if code == 409 and "gate refused" in msg and "needs" not in msg:
                refusal = msg
                break
            if code == 200:
                self.say(f"   gate [yellow]passed[/] the bad model: {out['gate']['reason']}")
                break
            self.say(f"   gate not yet: {msg}")
        if refusal:
            self.say(f"   gate [red]refused[/]: {refusal.split('refused: ', 1)[-1]}")
            self._mark("gate refused", message=refusal)
            self.must("advance", "forced past the gate to show the rollback triggers", force=True)
            self.say("   an admin forces it into A/B (recorded as forced) to show the triggers")
        self._mark("A/B (forced)")
        st = self.wait("the monitor to roll the bad challenger back", lambda s: s["state"] == "rolled_back", 150)
        t = st["transitions"][0]
        detected = datetime.fromisoformat(t["detail"]["detected_at"]).timestamp()
        time.sleep(3.0)
        late = self.answers.challenger_after(detected)
        restore = round(max(late) - detected, 2) if late else 0.0
        rules = [x["rule"] for x in t["detail"].get("triggers", [])]
        self.say(f"   [red]auto-rollback[/] by {t['actor']}: {t['reason']}")
        self.say(f"   trigger → traffic fully on the champion: {restore:.2f} s (memo: < 5 minutes)")
        self._mark("auto-rollback", triggers=rules, restore_s=restore)
        return {"triggers": rules, "restore_seconds": restore, "gate_refusal": refusal}

    def kpis(self) -> dict[str, Any]:
        m = dict(self.http.get("/v1/monitor").json())
        return {"windows": m["windows"]["2h"], "alerts": m["alerts"], "rollout": m["rollout"]}


def tell(url: str, admin_key: str, answers: Answers, good: str, bad: str, say: Say,
         timeout_s: float = 300.0) -> dict[str, Any]:  # fmt: skip
    """Run the story (module docstring); returns the timeline, the rollback and the KPIs per arm."""
    s = Story(url, admin_key, answers, say, timeout_s)
    out: dict[str, Any] = {"error": None, "rollback": None}
    try:
        s.good(good)
        out["rollback"] = s.bad(bad)
    except StoryError as exc:  # what happened so far is still worth showing
        out["error"] = str(exc)
    out.update(timeline=s.timeline, seconds=round(time.monotonic() - s.t0, 1), transitions=s.state()["transitions"])
    out.update(s.kpis())
    return out


__all__ = ["Answers", "StoryError", "tell"]
