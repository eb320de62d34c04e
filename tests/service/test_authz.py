"""Authorization: every route × (own merchant, other merchant, no key, wrong role) with nothing of another merchant
leaking; unknown fields refused (mass assignment); payload limits; per-key rate limits (in process and shared
through Redis), 429 with Retry-After and never a 5xx.

The route list comes from ``app.routes``: a route without an entry in ``ROUTES`` fails the matrix, so a new
endpoint cannot ship without saying who may call it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import fastapi.routing
import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.routing import Route

from aidg.config import Settings
from aidg.errors import ConfigError
from aidg.service import create_app, schemas
from aidg.service.backends import make_backends
from aidg.service.ratelimit import MemoryLimiter, RateLimit, RedisLimiter, SharedLimiter, bucket_ids
from tests.benches import load_bench
from tests.servers import require_server

MM_X, MM_Y, NO_GRANT, ADMIN = "mm-key-x-for-tests", "mm-key-y-for-tests", "mm-key-none-for-tests", "admin-key-tests"
UNKNOWN = "not-a-key-of-this-service"
REDIS = "redis://127.0.0.1:6379/0"

Kind = Literal["merchant", "list", "admin", "public"]


@dataclass(frozen=True)
class Target:
    """One merchant's objects the matrix asks about."""

    merchant: str
    decision: str


NOBODY = Target("m-999999", "0" * 32)  # no such merchant nor decision


@dataclass(frozen=True)
class Req:
    method: str
    url: str
    params: dict[str, Any] | None = None
    body: dict[str, Any] | None = None
    supplied: tuple[str, ...] = ()  # what the caller itself sent (a message may echo it: that leaks nothing)


def _feedback(t: Target) -> Req:
    eid = uuid.uuid4().hex
    body = {"event_id": eid, "decision_id": t.decision, "kind": "conversion", "value": 0.25}
    return Req("POST", "/v1/feedback", body=body, supplied=(eid,))


Build = Callable[[Target], Req]


@dataclass(frozen=True)
class Entry:
    kind: Kind
    build: Build


# every route of the app: who may call it, and how to fill its path parameters and body for a merchant's objects
ROUTES: dict[tuple[str, str], Entry] = {
    ("POST", "/v1/deals/generate"): Entry(
        "merchant",
        lambda t: Req(
            "POST", "/v1/deals/generate", body={"merchant_id": t.merchant, "n_variants": 5}, supplied=(t.merchant,)
        ),
    ),
    ("POST", "/v1/feedback"): Entry("merchant", _feedback),
    ("GET", "/v1/decisions/{decision_id}/explanation"): Entry(
        "merchant", lambda t: Req("GET", f"/v1/decisions/{t.decision}/explanation")
    ),
    ("GET", "/v1/merchants/{merchant_id}/profile"): Entry(
        "merchant", lambda t: Req("GET", f"/v1/merchants/{t.merchant}/profile", supplied=(t.merchant,))
    ),
    ("GET", "/v1/merchants/{merchant_id}/consent"): Entry(
        "merchant", lambda t: Req("GET", f"/v1/merchants/{t.merchant}/consent", supplied=(t.merchant,))
    ),
    # consent as it is (every matrix merchant consents): allowed requests change nothing
    ("PUT", "/v1/merchants/{merchant_id}/consent"): Entry(
        "merchant",
        lambda t: Req(
            "PUT", f"/v1/merchants/{t.merchant}/consent", body={"personalization": True}, supplied=(t.merchant,)
        ),
    ),
    ("GET", "/v1/decisions"): Entry("list", lambda t: Req("GET", "/v1/decisions", params={"limit": 200})),
    ("DELETE", "/v1/merchants/{merchant_id}"): Entry(
        "admin", lambda t: Req("DELETE", f"/v1/merchants/{t.merchant}", supplied=(t.merchant,))
    ),
    ("GET", "/v1/rollout"): Entry("admin", lambda t: Req("GET", "/v1/rollout")),
    # pause while idle: an admin gets 409 (nothing changes), everyone else must not get that far
    ("POST", "/v1/rollout/{action}"): Entry(
        "admin", lambda t: Req("POST", "/v1/rollout/pause", body={"reason": "authorization matrix"})
    ),
    ("GET", "/v1/rollout/autonomy"): Entry("admin", lambda t: Req("GET", "/v1/rollout/autonomy")),
    # a segment that does not exist: an admin gets 404 naming the segments (nothing pinned), everyone else less
    ("POST", "/v1/rollout/autonomy/{segment}"): Entry(
        "admin", lambda t: Req("POST", "/v1/rollout/autonomy/nowhere%7C0", body={"level": "apprentice"})
    ),
    ("GET", "/v1/monitor"): Entry("admin", lambda t: Req("GET", "/v1/monitor")),
    ("GET", "/healthz"): Entry("public", lambda t: Req("GET", "/healthz")),
    ("GET", "/readyz"): Entry("public", lambda t: Req("GET", "/readyz")),
    ("GET", "/metrics"): Entry("public", lambda t: Req("GET", "/metrics")),
    ("GET", "/v1/noop"): Entry("public", lambda t: Req("GET", "/v1/noop")),
    ("GET", "/dashboard"): Entry("public", lambda t: Req("GET", "/dashboard")),
    ("GET", "/dashboard/static/{name}"): Entry("public", lambda t: Req("GET", "/dashboard/static/dashboard.css")),
    ("GET", "/openapi.json"): Entry("public", lambda t: Req("GET", "/openapi.json")),
    ("GET", "/docs"): Entry("public", lambda t: Req("GET", "/docs")),
    ("GET", "/docs/oauth2-redirect"): Entry("public", lambda t: Req("GET", "/docs/oauth2-redirect")),
    ("GET", "/redoc"): Entry("public", lambda t: Req("GET", "/redoc")),
}


def _flat_routes(app: Any) -> list[tuple[str, set[str], Any]]:
    """(path, methods, route) of every route, routers included (FastAPI ≥ 0.16x keeps included routers nested)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    if iterate is None:  # older FastAPI: app.routes is flat
        return [(r.path, set(getattr(r, "methods", None) or ()), r) for r in app.routes if isinstance(r, Route)]
    return [(str(rc.path), set(rc.methods or ()), rc.original_route) for rc in iterate(app.routes) if rc.path]


def app_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route (HEAD folded into GET)."""
    out = []
    for path, methods, _ in _flat_routes(app):
        if "GET" in methods:
            methods = methods - {"HEAD"}
        out += [(m, path) for m in sorted(methods)]
    return out


def body_routes(app: Any) -> dict[str, Any]:
    """Path → the declared body annotation of every route that takes a body."""
    return {
        path: r.body_field.field_info.annotation
        for path, _, r in _flat_routes(app)
        if isinstance(r, APIRoute) and r.body_field is not None
    }


def _settings(trained: dict[str, Any], tmp: Path, keys: dict[str, Any], **extra: Any) -> Settings:
    return Settings(
        home=Path(trained["settings"].home),
        service={"data": trained["data"], **extra.pop("service", {})},
        database_url=f"sqlite:///{tmp / 'decisions.sqlite'}",
        api_keys=keys,
        **extra,
    )


@dataclass
class World:
    client: TestClient
    x: Target  # MM_X manages merchant x
    y: Target  # MM_Y manages merchant y
    z: Target  # the admin's merchant
    decisions: dict[str, set[str]] = field(default_factory=dict)  # merchant → its decision ids
    all_ids: set[str] = field(default_factory=set)  # every merchant the service knows

    @property
    def engine(self) -> Any:
        return self.client.app.state.engine  # type: ignore[attr-defined]


def _send(c: TestClient, req: Req, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"X-API-Key": key}
    return c.request(req.method, req.url, params=req.params, json=req.body, headers=headers)


@pytest.fixture(scope="module")
def world(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("authz")
    keys: dict[str, Any] = {ADMIN: {"role": "admin"}, NO_GRANT: {"role": "mm", "merchants": []}}
    # the merchants are known only once the model is loaded: load it once, then build the app with the keys
    from aidg.online.serving_model import ServingModel

    settings = _settings(trained, tmp, keys)
    model = ServingModel(settings, Path(trained["data"]), settings.service.model_version)
    table = model.merchants
    if "consent_personalization" in table.columns:  # merchants without consent get no decision: not these
        table = table[table["consent_personalization"].astype(bool)]
    served = {str(m) for m in model.ctx.merchant_ids}
    ids = [str(m) for m in table["merchant_id"] if str(m) in served]
    mx, my, mz = ids[0], ids[1], ids[-1]
    keys |= {MM_X: {"role": "mm", "merchants": [mx]}, MM_Y: {"role": "mm", "merchants": [my]}}
    # a high limit: the matrix's requests are not what this test rate-limits
    settings = _settings(trained, tmp, keys, service={"rate_limit_per_second": 10_000, "rate_limit_burst": 10_000})
    with TestClient(create_app(settings, model=model), raise_server_exceptions=False) as c:
        made: dict[str, set[str]] = {}
        targets = {}
        for m, key in ((mx, MM_X), (my, MM_Y), (mz, ADMIN)):
            mine = set()
            for _ in range(2):
                r = c.post("/v1/deals/generate", json={"merchant_id": m}, headers={"X-API-Key": key})
                assert r.status_code == 200 and r.json()["decision_id"], r.text
                mine.add(r.json()["decision_id"])
            d = sorted(mine)[0]
            event = {"event_id": uuid.uuid4().hex, "decision_id": d, "kind": "approval", "approved": True}
            assert c.post("/v1/feedback", json=event, headers={"X-API-Key": key}).status_code == 200
            made[m], targets[m] = mine, Target(m, d)
        yield World(c, targets[mx], targets[my], targets[mz], made, {str(m) for m in model.merchants.merchant_id})


def _check_denied_body(r: httpx.Response, req: Req, forbidden: set[str]) -> list[str]:
    """What a denied answer leaks beyond the caller's own input (empty: nothing)."""
    leaks = []
    body = r.json()
    if set(body) != {"error", "message", "detail"} or body["detail"] is not None:
        leaks.append(f"body beyond the error shape: {sorted(body)} detail={body.get('detail')!r}")
    if body.get("error") not in ("unauthorized", "forbidden"):
        leaks.append(f"error kind {body.get('error')!r}")
    msg = str(body.get("message", ""))
    for s in req.supplied:
        msg = msg.replace(s, "<supplied>")
    leaks += [f"names {tok!r}" for tok in forbidden if tok in msg]
    if re.search(r"\d", msg):
        leaks.append(f"a number in {msg!r}")
    return leaks


def _tokens(text: str) -> set[str]:
    """Every id-like token of a response body (whatever the merchant ids look like)."""
    return set(re.findall(r"[A-Za-z0-9_.:-]+", text))


# what each mm key covers: any other merchant id in an answer to it is a leak
GRANTS: dict[str, Callable[[World], set[str]]] = {
    MM_X: lambda w: {w.x.merchant},
    MM_Y: lambda w: {w.y.merchant},
    NO_GRANT: lambda w: set(),
}


@dataclass
class Tally:
    requests: int = 0
    must_deny: int = 0
    denied: int = 0
    leaks: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


def _expect(kind: Kind, case: str) -> str:
    """'allow', '401' or '403' for a route kind and a case."""
    if kind == "public":
        return "allow"
    if case in ("no_key", "empty_key", "unknown_key"):
        return "401"
    if case == "admin":
        return "allow"
    if kind == "admin":
        return "403"  # own, other, wrong_role: every mm key
    if kind == "list":
        return "allow"  # filtered: checked for the other merchant's data instead
    return "allow" if case == "own" else "403"


def test_every_route_has_a_matrix_entry(world: World) -> None:
    routes = app_routes(world.client.app)
    missing = [r for r in routes if r not in ROUTES]
    assert not missing, f"routes without an authorization matrix entry in ROUTES (say who may call them): {missing}"
    stale = [r for r in ROUTES if r not in routes]
    assert not stale, f"ROUTES names routes the app does not have: {stale}"


def test_authorization_matrix(world: World) -> None:
    c, x, y, z = world.client, world.x, world.y, world.z
    routes = [r for r in app_routes(c.app) if r in ROUTES]
    log = world.engine.backends.decisions
    t = Tally()
    refused_events: set[str] = set()
    # (case, key, whose objects it asks for, whose data must not show in the answer); own and other from both sides
    cases: list[tuple[str, str | None, Target, list[Target]]] = [
        ("own", MM_X, x, [y]), ("own", MM_Y, y, [x]),
        ("other", MM_X, y, [y]), ("other", MM_Y, x, [x]), ("unknown_id", MM_X, NOBODY, [y]),
        ("no_key", None, x, [x, y]), ("empty_key", "", x, [x, y]), ("unknown_key", UNKNOWN, x, [x, y]),
        ("wrong_role", NO_GRANT, x, [x, y]), ("admin", ADMIN, y, []),
    ]  # fmt: skip
    for route in routes:
        entry = ROUTES[route]
        for case, key, target, hidden in cases:
            if entry.kind == "public" and case not in ("no_key", "unknown_key"):
                continue
            if entry.kind == "admin" and case == "admin":
                target = NOBODY  # an admin's DELETE is let through to a 404: it erases nothing of the session's
            if entry.kind == "admin" and case == "wrong_role":
                key = MM_Y  # an mm key, whatever it manages
            req = entry.build(target)
            r = _send(c, req, key)
            t.requests += 1
            want = _expect(entry.kind, case)
            where = f"{route[0]} {route[1]} {case} key={key!r} → {r.status_code} {r.text[:160]}"
            if r.status_code >= 500:
                t.wrong.append("5xx: " + where)
                continue
            decisions = {d for h in hidden for d in world.decisions[h.merchant]}
            merchants = {h.merchant for h in hidden}
            if want == "allow":
                if r.status_code in (401, 403):
                    t.wrong.append("refused: " + where)
                elif entry.kind in ("merchant", "list") and r.status_code != 200:
                    t.wrong.append("failed: " + where)
                elif entry.kind != "admin" or case != "admin":
                    # any decision of the hidden merchants, and for an mm key any merchant id outside its grant
                    # (an explanation's similar merchants included: those are descriptions), is a leak
                    leaked = [s for s in decisions | merchants if s in r.text]
                    if key in GRANTS:
                        leaked += sorted(_tokens(r.text) & (world.all_ids - GRANTS[key](world)))
                    if leaked:
                        t.leaks.append(f"{where}: shows {sorted(set(leaked))[:5]}")
                continue
            t.must_deny += 1
            if r.status_code in (401, 403):
                t.denied += 1
                if req.url == "/v1/feedback":
                    refused_events.update(req.supplied)
            if r.status_code != int(want):
                t.wrong.append(f"want {want}: {where}")
                continue
            t.leaks += [f"{where}: {leak}" for leak in _check_denied_body(r, req, decisions | merchants)]
    # nothing a refused request carried was stored, nothing was deleted
    stored = {e.event_id for d in (x.decision, y.decision, z.decision) for e, _ in log.events(d)}
    assert refused_events and not refused_events & stored
    assert all(log.get(d) is not None for m in (x, y) for d in world.decisions[m.merchant])
    share = t.denied / t.must_deny
    print(f"\nauthorization matrix: {t.requests} requests over {len(routes)} routes, {t.must_deny} must be refused, "
          f"{t.denied} refused ({share:.1%}), {len(t.leaks)} leaks")  # fmt: skip
    assert not t.wrong, "\n".join(t.wrong)
    assert share == 1.0 and not t.leaks, "\n".join(t.leaks)
    assert t.must_deny >= 40


def test_similar_merchants_are_descriptions_for_an_mm_key_and_carry_ids_for_an_admin(world: World) -> None:
    c, x = world.client, world.x
    url = f"/v1/decisions/{x.decision}/explanation"
    mm = c.get(url, headers={"X-API-Key": MM_X}).json()["similar_merchants"]
    admin = c.get(url, headers={"X-API-Key": ADMIN}).json()["similar_merchants"]
    assert mm and len(mm) == len(admin)
    for s in mm:
        assert set(s) == {"rank", "similarity", "category", "city_tier", "similar_in", "outcome"}, s
        assert s["category"] and s["city_tier"] in (1, 2, 3)
        assert len(s["similar_in"]) == 3 and all(set(t) == {"trait", "theirs", "yours"} for t in s["similar_in"])
        assert s["outcome"]["deals"] in ("none", "1-4", "5-19", "20-49", "50+")
    assert all(s["merchant_id"] in world.all_ids - {x.merchant} for s in admin)
    assert [{k: v for k, v in s.items() if k != "merchant_id"} for s in admin] == mm  # the same, less the id


def test_cross_merchant_feedback_stores_nothing_and_cannot_probe_ids(world: World) -> None:
    c, x, y = world.client, world.x, world.y
    log = world.engine.backends.decisions
    before = {d: {e.event_id for e, _ in log.events(d)} for d in (x.decision, y.decision)}
    own = {"event_id": uuid.uuid4().hex, "decision_id": x.decision, "kind": "conversion", "value": 0.1}
    theirs = {"event_id": uuid.uuid4().hex, "decision_id": y.decision, "kind": "gp30", "value": 0.3}
    r = c.post("/v1/feedback", json={"events": [own, theirs]}, headers={"X-API-Key": MM_X})
    assert r.status_code == 403, r.text
    assert y.merchant not in r.text and y.decision not in r.text and theirs["event_id"] in r.json()["message"]
    after = {d: {e.event_id for e, _ in log.events(d)} for d in (x.decision, y.decision)}
    assert after == before  # the whole request refused: not even the own event was kept
    # another merchant's decision and an id that does not exist get the same answer
    fake = uuid.uuid4().hex
    same_event = uuid.uuid4().hex
    answers = []
    for d in (y.decision, fake):
        ev = {"event_id": same_event, "decision_id": d, "kind": "conversion", "value": 0.1}
        fb = c.post("/v1/feedback", json=ev, headers={"X-API-Key": MM_X})
        ex = c.get(f"/v1/decisions/{d}/explanation", headers={"X-API-Key": MM_X})
        wi = c.get(f"/v1/decisions/{d}/explanation", params={"variant": 0, "term": "price", "value": "9"},
                   headers={"X-API-Key": MM_X})  # fmt: skip
        answers.append([(a.status_code, a.json()) for a in (fb, ex, wi)])
    assert answers[0] == answers[1] and {s for s, _ in answers[0]} == {403}
    for m in (y.merchant, "m-999999"):  # a merchant: the caller's own input is echoed, nothing else
        p = c.get(f"/v1/merchants/{m}/profile", headers={"X-API-Key": MM_X})
        g = c.post("/v1/deals/generate", json={"merchant_id": m}, headers={"X-API-Key": MM_X})
        assert p.status_code == g.status_code == 403
        assert p.json()["message"].replace(m, "M") == g.json()["message"].replace(m, "M")
    # the owner and an admin still reach it; an admin learns that an unknown id is unknown
    assert c.get(f"/v1/decisions/{y.decision}/explanation", headers={"X-API-Key": MM_Y}).status_code == 200
    assert c.get(f"/v1/decisions/{fake}/explanation", headers={"X-API-Key": ADMIN}).status_code == 404
    ev = {"event_id": uuid.uuid4().hex, "decision_id": fake, "kind": "conversion", "value": 0.1}
    r = c.post("/v1/feedback", json=ev, headers={"X-API-Key": ADMIN})
    assert r.status_code == 404 and r.json()["unknown_decisions"] == 1
    listed = c.get("/v1/decisions", params={"limit": 200}, headers={"X-API-Key": MM_X}).json()["decisions"]
    assert listed and {d["merchant_id"] for d in listed} == {x.merchant}


# -- mass assignment and payload limits --------------------------------------------------------------------------


def _request_models() -> list[type[BaseModel]]:
    return [m for m in vars(schemas).values() if isinstance(m, type) and issubclass(m, schemas._Request)
            and m is not schemas._Request]  # fmt: skip


def test_every_request_model_forbids_unknown_fields(world: World) -> None:
    models = _request_models()
    assert {m.__name__ for m in models} >= {"GenerateRequest", "FeedbackEvent", "FeedbackBatch", "EditedTerms",
                                            "RolloutRequest", "ConsentRequest"}  # fmt: skip
    assert all(m.model_config.get("extra") == "forbid" for m in models)
    # every body a route declares is one of them (feedback parses its body itself, with FeedbackEvent/Batch)
    bodies = body_routes(world.client.app)
    assert "/v1/deals/generate" in bodies
    for path, t in bodies.items():
        assert t is Any or t in models, f"{path}: body {t} is not a request model that forbids extra fields"


MASS = [
    ("generate", "POST", "/v1/deals/generate", lambda x: {"merchant_id": x.merchant, "is_admin": True}, "is_admin"),
    ("feedback", "POST", "/v1/feedback",
     lambda x: {"event_id": "e", "decision_id": x.decision, "kind": "gp30", "value": 0.1, "merchant_id": "m"},
     "merchant_id"),
    ("batch", "POST", "/v1/feedback",
     lambda x: {"events": [{"event_id": "e", "decision_id": x.decision, "kind": "gp30", "value": 0.1}], "role": 1},
     "role"),
    ("batch event", "POST", "/v1/feedback",
     lambda x: {"events": [{"event_id": "e", "decision_id": x.decision, "kind": "gp30", "value": 0.1,
                            "applied": True}]}, "applied"),
    ("edited terms", "POST", "/v1/feedback",
     lambda x: {"event_id": "e", "decision_id": x.decision, "kind": "override",
                "edited_terms": {"discount_pct": 0.2, "pscore": 1}}, "pscore"),
    ("rollout", "POST", "/v1/rollout/pause", lambda x: {"reason": "r", "actor": "someone else"}, "actor"),
    ("autonomy", "POST", "/v1/rollout/autonomy/spa%7C1", lambda x: {"level": None, "actor": "someone"}, "actor"),
    ("consent", "PUT", "/v1/merchants/{m}/consent", lambda x: {"training": True, "erased": False}, "erased"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "url", "body", "field_name"), MASS, ids=[m[0] for m in MASS])
def test_unknown_fields_are_422_naming_them(
    world: World, name: str, method: str, url: str, body: Callable[[Target], dict[str, Any]], field_name: str
) -> None:
    key = ADMIN if url.startswith("/v1/rollout") else MM_X
    log = world.engine.backends.decisions
    before = len(log.events(world.x.decision))
    url = url.replace("{m}", world.x.merchant)
    r = world.client.request(method, url, json=body(world.x), headers={"X-API-Key": key})
    assert r.status_code == 422, r.text
    assert field_name in r.json()["message"]
    assert len(log.events(world.x.decision)) == before


def test_every_body_route_has_a_mass_assignment_case(world: World) -> None:
    with_body = set(body_routes(world.client.app))
    covered = {"/v1/deals/generate", "/v1/feedback", "/v1/rollout/{action}", "/v1/merchants/{merchant_id}/consent",
               "/v1/rollout/autonomy/{segment}"}  # fmt: skip
    assert with_body <= covered, f"routes with a body but no unknown-field case in MASS: {with_body - covered}"


def test_payload_limits(world: World) -> None:
    c, h = world.client, {"X-API-Key": MM_X, "content-type": "application/json"}
    limit = world.engine.settings.service.max_body_bytes
    big = b'{"events": [' + b" " * (limit + 10) + b"]}"
    r = c.post("/v1/feedback", content=big, headers=h)
    assert r.status_code == 413 and "larger than" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"merchant_id": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    r = c.post("/v1/deals/generate", content=chunks(), headers=h)
    assert r.status_code == 413
    n = world.engine.settings.service.max_batch_events + 1
    events = [{"event_id": f"e{i}", "decision_id": world.x.decision, "kind": "gp30", "value": 0.1} for i in range(n)]
    r = c.post("/v1/feedback", content=json.dumps({"events": events}), headers=h)
    assert r.status_code == 413 and "split" in r.json()["message"]
    for body in ({"merchant_id": "m" * 201}, {"merchant_id": world.x.merchant, "n_variants": 10**6}):
        assert c.post("/v1/deals/generate", json=body, headers=h).status_code == 422
    terms = {
        "event_id": "e",
        "decision_id": world.x.decision,
        "kind": "override",
        "edited_terms": {"category_id": "c" * 201},
    }
    assert c.post("/v1/feedback", json=terms, headers=h).status_code == 422


# -- rate limits ------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.us = 1_000_000

    def __call__(self) -> int:
        return self.us


def test_gcra_lets_a_burst_through_then_the_rate() -> None:
    clock = Clock()
    lim = MemoryLimiter(20.0, 20, clock)
    assert [lim.wait("a") for _ in range(20)] == [0.0] * 20  # the whole burst, exactly
    assert lim.wait("a") == pytest.approx(0.05)  # then one every 1/20 s
    assert lim.wait("b") == 0.0  # another bucket is unaffected
    clock.us += 50_000
    assert lim.wait("a") == 0.0 and lim.wait("a") > 0
    clock.us += 60_000_000  # a long pause refills the bucket to its burst, never beyond
    assert sum(lim.wait("a") == 0.0 for _ in range(30)) == 20


def test_shared_limiters_keep_one_bucket_per_key_between_them() -> None:
    import multiprocessing as mp

    clock = Clock()
    tat = mp.get_context("spawn").Array("q", 2)  # what `aidg serve` hands its workers
    one, two = (SharedLimiter(tat, ["a", "b"], 20.0, 20, clock) for _ in range(2))  # two workers' limiters
    assert [w.wait("a") for _ in range(10) for w in (one, two)] == [0.0] * 20  # one burst between them
    assert one.wait("a") == pytest.approx(0.05) and two.wait("a") == pytest.approx(0.05)
    assert two.wait("b") == 0.0  # the other key's slot is its own
    clock.us += 50_000
    assert one.wait("a") == 0.0 and two.wait("a") > 0
    with pytest.raises(ConfigError, match="slots"):
        SharedLimiter(tat, ["a", "b", "c"], 20.0, 20, clock)


def test_bucket_ids_never_hold_the_key() -> None:
    ids = bucket_ids([MM_X, MM_Y])
    assert all(MM_X not in v and MM_Y not in v and len(v) == 32 for v in ids.values())
    assert bucket_ids([MM_X, MM_Y]) == ids and bucket_ids([MM_X]) != {MM_X.encode(): ids[MM_X.encode()]}


@dataclass
class Burst:
    sent: int = 0
    ok: int = 0
    limited: int = 0
    errors: int = 0
    other: list[int] = field(default_factory=list)

    def add(self, r: httpx.Response) -> None:
        self.sent += 1
        if r.status_code == 200:
            self.ok += 1
        elif r.status_code == 429:
            self.limited += 1
        elif r.status_code >= 500:
            self.errors += 1
        else:
            self.other.append(r.status_code)


@contextmanager
def _rate_client(world: World, tmp: Path, rate: float, burst: int, **extra: Any) -> Iterator[TestClient]:
    """An app with two mm keys and this limit, serving the world's model; Redis (if named) for the limit only."""
    tmp.mkdir(parents=True, exist_ok=True)
    keys = {
        MM_X: {"role": "mm", "merchants": [world.x.merchant]},
        MM_Y: {"role": "mm", "merchants": [world.y.merchant]},
    }
    settings = Settings(
        home=world.engine.settings.home,
        service={"data": world.engine.settings.service.data, "rate_limit_per_second": rate, "rate_limit_burst": burst},
        database_url=f"sqlite:///{tmp / 'decisions.sqlite'}",
        api_keys=keys,
        **extra,
    )
    backends = make_backends(settings.model_copy(update={"redis_url": None}))
    try:
        app = create_app(settings, model=world.engine.model, backends=backends)
        with TestClient(app, raise_server_exceptions=False) as c:
            yield c
    finally:
        backends.close()


def test_a_burst_at_twice_the_limit_gets_429_and_never_a_5xx(world: World, tmp_path: Path) -> None:
    rate, burst = 20.0, 20
    x = world.x
    url, hx, hy = f"/v1/merchants/{x.merchant}/profile", {"X-API-Key": MM_X}, {"X-API-Key": MM_Y}
    a, b = Burst(), Burst()
    with _rate_client(world, tmp_path, rate, burst) as c:
        t0 = time.monotonic()
        refused = []
        for _ in range(2 * burst):  # 2 × the burst at once
            r = c.get(url, headers=hx)
            a.add(r)
            refused += [r] if r.status_code == 429 else []
        first = refused[0]
        assert a.ok >= burst
        # then 2 × the rate for 2 s, the other key at a quarter of its rate alongside
        start = time.monotonic()
        for i in range(int(2 * rate * 2)):
            time.sleep(max(0.0, start + i / (2 * rate) - time.monotonic()))
            a.add(c.get(url, headers=hx))
            if i % 8 == 0:
                b.add(c.post("/v1/deals/generate", json={"merchant_id": world.y.merchant, "n_variants": 5},
                             headers=hy))  # fmt: skip
        elapsed = time.monotonic() - t0
        # no key and an unknown key are still 401 while the key is over its limit; key-less routes answer
        assert c.get(url).status_code == 401
        assert c.get(url, headers={"X-API-Key": UNKNOWN}).status_code == 401
        assert c.get("/healthz").status_code == 200
        metrics = c.get("/metrics").text
    allowed = burst + rate * elapsed  # the most the limit lets through in that time
    excess = a.sent - allowed
    share = a.limited / excess
    print(f"\nburst: sent {a.sent} in {elapsed:.2f} s at a limit of {rate:g}/s (burst {burst}): "
          f"{a.ok} answered, excess {excess:.1f}, {a.limited} got 429 ({share:.1%} of the excess), {a.errors} 5xx; "
          f"other key {b.ok}/{b.sent} answered")  # fmt: skip
    assert a.errors == b.errors == 0 and not a.other and not b.other
    assert share >= 0.99 and a.ok <= allowed
    assert a.ok >= 0.9 * allowed - 2  # and the limit refused only what went over it
    assert b.ok == b.sent  # another key is unaffected
    body = first.json()
    assert set(body) == {"error", "message", "detail"} and body["error"] == "rate_limited"
    assert "wait" in body["message"] and 0 < body["detail"]["retry_after_s"] <= 1 / rate + 1e-6
    assert int(first.headers["Retry-After"]) >= 1
    assert 'status="429"' in metrics


def test_redis_down_fails_open_without_a_5xx(world: World, tmp_path: Path) -> None:
    lim = RedisLimiter("redis://127.0.0.1:1/0", 1.0, 1, timeout_s=0.05, retry_s=60.0)
    t0 = time.monotonic()
    assert [lim.wait("a") for _ in range(5)] == [0.0] * 5 and lim.failures == 5
    assert time.monotonic() - t0 < 1.0  # tried once, then left alone for retry_s
    local = RedisLimiter("redis://127.0.0.1:1/0", 1.0, 2, fallback=MemoryLimiter(1.0, 2), timeout_s=0.05)
    assert [local.wait("a") > 0 for _ in range(3)] == [False, False, True]  # this process's own bucket still holds
    with _rate_client(world, tmp_path, 5.0, 5, redis_url="redis://127.0.0.1:1/0") as c:
        assert isinstance(c.app.state.limiter, RedisLimiter)  # type: ignore[attr-defined]
        codes = [c.get(f"/v1/merchants/{world.x.merchant}/profile", headers={"X-API-Key": MM_X}).status_code
                 for _ in range(10)]  # fmt: skip
    assert codes[:5] == [200] * 5 and set(codes) <= {200, 429}


@pytest.fixture
def redis_ns() -> Iterator[str]:
    require_server("Redis", "127.0.0.1", 6379)
    import redis

    ns = f"aidg-t-{uuid.uuid4().hex[:10]}"
    yield ns
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(f"{ns}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_redis_limiter_shares_one_limit_across_app_instances(world: World, tmp_path: Path, redis_ns: str) -> None:
    import redis

    rate, burst = 20.0, 20
    shared = {"redis_url": REDIS, "redis_namespace": redis_ns}
    url, h = f"/v1/merchants/{world.x.merchant}/profile", {"X-API-Key": MM_X}
    per_app = [Burst(), Burst()]
    with (
        _rate_client(world, tmp_path / "a", rate, burst, **shared) as c0,
        _rate_client(world, tmp_path / "b", rate, burst, **shared) as c1,
    ):
        t0 = time.monotonic()
        for i in range(4 * burst):  # 2 × the burst through each instance, alternating
            per_app[i % 2].add((c0, c1)[i % 2].get(url, headers=h))
        elapsed = time.monotonic() - t0
        client = redis.Redis.from_url(REDIS)
        try:  # the drained bucket, while it lasts (it expires once full again: about a second from now)
            rl = [k.decode() for k in client.scan_iter(f"{redis_ns}:rl:*")]
            with client.pipeline(transaction=True) as pipe:  # value and expiry read at one instant
                for n in rl:
                    pipe.get(n).pttl(n)
                read = pipe.execute()
            other = c1.get(f"/v1/merchants/{world.y.merchant}/profile", headers={"X-API-Key": MM_Y})
            # the second key's bucket, one token short, expires 1/rate = 50 ms later: only its name is checked
            names = [k.decode() for k in client.scan_iter(f"{redis_ns}:*")]
        finally:
            client.close()
    values, ttls = read[0::2], read[1::2]
    ok = sum(p.ok for p in per_app)
    allowed = burst + rate * elapsed
    excess = 4 * burst - allowed
    limited = sum(p.limited for p in per_app)
    print(f"\nredis: sent {4 * burst} through 2 instances in {elapsed:.2f} s: {ok} answered (one shared limit allows "
          f"{allowed:.1f}; two in-process limits would allow {2 * allowed:.1f}), {limited} got 429 "
          f"({limited / excess:.1%} of the excess)")  # fmt: skip
    assert all(p.errors == 0 and not p.other for p in per_app)
    assert burst <= ok <= allowed and limited / excess >= 0.99
    assert all(p.ok > 0 for p in per_app)  # both instances served: one limit between them
    assert other.status_code == 200
    after = {n for n in names if n.startswith(f"{redis_ns}:rl:")}
    assert len(rl) == 1 and len(after - set(rl)) <= 1  # one bucket per API key
    assert not any(MM_X in n or MM_Y in n for n in names)  # and no API key in its name
    assert all(v is not None and v.isdigit() for v in values) and all(0 < t <= 2_000 for t in ttls), (values, ttls)


def test_the_middleware_is_in_front_only_with_keys(world: World, tmp_path: Path) -> None:
    settings = Settings(home=world.engine.settings.home, service={"data": world.engine.settings.service.data},
                        database_url=f"sqlite:///{tmp_path / 'd.sqlite'}")  # fmt: skip
    app = create_app(settings, model=world.engine.model)
    with TestClient(app, raise_server_exceptions=False) as c:  # keyless: no limit at all
        assert app.state.limiter is None and not any(m.cls is RateLimit for m in app.user_middleware)
        assert all(c.get("/v1/noop").status_code == 200 for _ in range(300))
    assert any(m.cls is RateLimit for m in world.client.app.user_middleware)  # type: ignore[attr-defined]


def test_the_rate_limit_holds_across_the_workers_of_one_serve_without_redis(trained: dict[str, Any]) -> None:
    """`aidg serve --workers 2`, embedded backends: one key's burst over many connections (the kernel spreads
    them over both workers) is cut at one burst, not two."""
    import socket

    proc = load_bench("service_proc.py")
    rate, burst, sent = 1.0, 12, 48
    env = {"AIDG_API_KEYS": json.dumps({ADMIN: {"role": "admin"}}), "AIDG_SERVICE__RATE_LIMIT_PER_SECOND": str(rate),
           "AIDG_SERVICE__RATE_LIMIT_BURST": str(burst), "AIDG_REDIS_URL": None, "AIDG_DATABASE_URL": None}  # fmt: skip
    home = Path(trained["settings"].home)
    with proc.service(home, Path(trained["data"]), 2, env, 180.0, extra_args=["--no-compile"]) as (port, pgid):
        codes, served_by = [], set()
        t0 = time.monotonic()
        for _ in range(sent):  # one connection each
            with socket.create_connection((proc.HOST, port), timeout=5) as s:
                s.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-API-Key: {ADMIN}\r\n\r\n".encode())
                reply = s.recv(65536)  # the status line is in the first read; the connection stays open (keep-alive)
                served_by.add(proc._conn_pid(pgid, port, s.getsockname()[1]))  # which worker holds its other end
            codes.append(int(reply.split()[1]))
        elapsed = time.monotonic() - t0
    served_by.discard(None)
    assert len(served_by) == 2, f"every connection went to one worker: {served_by}"
    assert set(codes) <= {200, 429}, codes
    allowed = codes.count(200)
    # one shared bucket: a burst plus what the rate refilled meanwhile; per-worker buckets would allow ~2 bursts
    assert burst <= allowed <= burst + rate * elapsed + 1, (allowed, elapsed)
