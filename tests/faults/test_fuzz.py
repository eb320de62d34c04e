"""Schemathesis against the service's own OpenAPI schema (``bench/fuzz.py``): every check, every phase, stateful
links; no failure, no 5xx. ``make faults`` runs the same harness with 1,000 examples per operation.

Each protection the fuzzer needed has its own test here, failing if the protection goes:

* the fuzz itself (any undeclared status, a response off its schema, a schema-valid request refused, an invalid one
  accepted, a 5xx);
* the harness bites: a deliberately broken app gives failures and 5xx, with a curl to reproduce them;
* response models documented (``responses.JSON`` is a ``JSONResponse``), the error shape for Starlette's own
  errors (an unreadable body, 405 with its ``Allow``), ``Allow`` naming every method of ``/consent``, the
  configured limits and the API key in the OpenAPI, DELETE of a real merchant never sent.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from aidg.service.responses import JSON

CASES = 100  # per operation and generation mode; `make faults` runs 1,000


def _show(out: dict[str, Any]) -> str:
    rows = [f"{f['operation']} [{f['check']}] {f['status']}: {f['message'][:300]}\n  {f['curl']}"
            for f in out["failures"]]  # fmt: skip
    return "\n".join(rows) + f"\nkinds: {out['failure_kinds']}\nerrors: {out['errors']}"


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_schemathesis_finds_no_failure_and_no_5xx(fuzz_app: Any, fuzz_harness: ModuleType) -> None:
    out = fuzz_harness.fuzz(fuzz_app, CASES, seed=0)
    assert out["schemathesis_failures"] == 0, _show(out)
    assert out["schemathesis_5xx"] == 0 and out["app_exceptions"] == 0, _show(out)
    assert out["errors"] == [] and out["erasures_refused"] == 0, _show(out)
    ops = {f"{m.upper()} {p}" for p, item in fuzz_app.openapi()["paths"].items() for m in item}
    assert set(out["status_counts_by_operation"]) == ops  # every operation of the schema was fuzzed
    per_op = out["cases_per_operation"]
    assert all(per_op[op] >= CASES for op in ops - set(out["single_request_operations"])), per_op
    assert out["phases"].get("stateful", 0) > 0 and out["phases"].get("coverage", 0) > 0
    by_op = out["status_counts_by_operation"]
    # the fuzz gets past validation: decisions made, then explained and answered along the OpenAPI links
    for op in ("POST /v1/deals/generate", "GET /v1/decisions/{decision_id}/explanation", "POST /v1/feedback"):
        assert by_op[op].get(200, 0) > 0, by_op[op]
    assert set(by_op["DELETE /v1/merchants/{merchant_id}"]) <= {401, 404, 405}  # no merchant erased


class _Item(BaseModel):
    name: str
    price: float


def _broken_app() -> FastAPI:
    """A test-only app with the faults the fuzz must see: a crash, a response off its model, an undeclared status."""
    app = FastAPI(default_response_class=JSON)

    @app.get("/items/{n}", response_model=_Item, responses={404: {"description": "no such item"}})
    def item(n: int) -> JSON:
        if n % 7 == 3:
            raise ZeroDivisionError("a bug")  # → 500
        if n > 1000:
            return JSON({"error": "teapot"}, status_code=418)  # undeclared
        if n % 2 == 0:
            return JSON({"name": n, "price": "free"})  # off its schema
        return JSON({"name": f"item {n}", "price": 1.5})

    return app


def test_the_harness_reports_5xx_and_failures_of_a_broken_app(fuzz_harness: ModuleType) -> None:
    out = fuzz_harness.fuzz(_broken_app(), 50, seed=0, key=None)
    assert out["schemathesis_5xx"] > 0 and out["app_exceptions"] > 0
    assert out["schemathesis_failures"] >= 3
    checks = {f["check"] for f in out["failures"]} | {k.split(" ")[2].rstrip(":") for k in out["failure_kinds"]}
    assert {"not_a_server_error", "response_schema_conformance", "status_code_conformance"} <= checks, checks
    assert all(f["curl"].startswith("curl ") or "curl" in f["curl"] for f in out["failures"])


def test_delete_of_a_real_merchant_never_reaches_the_app(fuzz_harness: ModuleType) -> None:
    reached: list[str] = []
    app = FastAPI(default_response_class=JSON)

    @app.delete("/v1/merchants/{merchant_id}")
    def erase(merchant_id: str) -> JSON:
        reached.append(merchant_id)
        return JSON({"erased": merchant_id}, status_code=404)

    served = fuzz_harness.Served(app, {"m-000001"})
    with TestClient(served) as c:
        assert c.delete("/v1/merchants/m-000001").status_code == 418
        assert c.delete("/v1/merchants/someone-else").status_code == 404
    assert reached == ["someone-else"] and served.refused == 1


def test_an_exception_out_of_the_app_is_a_500_as_a_server_makes_it(fuzz_harness: ModuleType) -> None:
    app = FastAPI(default_response_class=JSON)

    @app.get("/boom")
    def boom() -> JSON:
        raise RuntimeError("a bug")

    served = fuzz_harness.Served(app, set())
    with TestClient(served, raise_server_exceptions=True) as c:
        assert c.get("/boom").status_code == 500
    assert served.exceptions == 1


# --- the protections the fuzzer needed, one test each (the app without its lifespan: nothing here needs it) ---


def test_openapi_documents_each_response_model(fuzz_app: Any) -> None:
    paths = fuzz_app.openapi()["paths"]
    ok = paths["/v1/deals/generate"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/GenerateResponse"}  # not {"type": "string"}
    for path, item in paths.items():
        for method, op in item.items():
            schema = op["responses"]["200"]["content"].get("application/json", {}).get("schema", {})
            assert schema.get("type") != "string", f"{method} {path}: a JSON object documented as a string"


def test_openapi_states_the_configured_limits_and_the_api_key(fuzz_app: Any) -> None:
    spec = fuzz_app.openapi()
    svc = fuzz_app.state.engine.settings.service
    n_variants = spec["components"]["schemas"]["GenerateRequest"]["properties"]["n_variants"]
    assert {"type": "integer", "minimum": 1, "maximum": svc.max_variants} in n_variants["anyOf"]
    body = spec["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch = next(o for o in body["oneOf"] if o.get("title") == "FeedbackBatch")
    assert batch["properties"]["events"]["maxItems"] == svc.max_batch_events
    assert len(body["oneOf"]) == 5  # one schema per event kind, and the batch
    assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "X-API-Key"
    assert spec["paths"]["/v1/monitor"]["get"]["security"] == [{"ApiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
    params = spec["paths"]["/v1/decisions/{decision_id}/explanation"]["get"]["parameters"]
    term = next(p for p in params if p["name"] == "term")
    assert "discount_pct" in str(term["schema"]) and "enum" in str(term["schema"])


def test_an_unreadable_body_is_400_in_the_error_shape(fuzz_app: Any, fuzz_harness: ModuleType) -> None:
    c = TestClient(fuzz_app, headers={"X-API-Key": fuzz_harness.ADMIN_KEY})
    for url in ("/v1/deals/generate", "/v1/feedback"):
        r = c.post(url, content=b"\xff\xfe\x00", headers={"content-type": "application/json"})
        assert r.status_code == 400 and set(r.json()) == {"error", "message", "detail"}, r.text
        assert r.json()["error"] == "malformed_json"


def test_a_method_the_path_lacks_is_405_naming_every_method_it_has(fuzz_app: Any, fuzz_harness: ModuleType) -> None:
    c = TestClient(fuzz_app, headers={"X-API-Key": fuzz_harness.ADMIN_KEY})
    r = c.options("/v1/merchants/m-000001/consent")
    assert r.status_code == 405 and r.headers["allow"] == "GET, PUT", r.headers
    assert r.json()["error"] == "method_not_allowed"
    r = c.patch("/v1/deals/generate", json={})
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_request_types_are_strict_as_their_schema_says(fuzz_app: Any, fuzz_harness: ModuleType) -> None:
    c = TestClient(fuzz_app, headers={"X-API-Key": fuzz_harness.ADMIN_KEY})
    merchant = str(fuzz_app.state.engine.model.ctx.merchant_ids[0])
    before = c.get(f"/v1/merchants/{merchant}/consent").json()
    r = c.put(f"/v1/merchants/{merchant}/consent", json={"training": 0.0})  # the fuzzer's find: 0.0 read as false
    assert r.status_code == 422 and "training" in r.json()["message"], r.text
    assert c.get(f"/v1/merchants/{merchant}/consent").json() == before  # nothing was set
    event = {"event_id": "e-strict", "decision_id": "d", "kind": "conversion", "value": "0.5"}
    r = c.post("/v1/feedback", json=event)
    assert r.status_code == 422 and "value" in r.json()["message"], r.text
    r = c.post("/v1/deals/generate", json={"merchant_id": merchant, "n_variants": "5"})
    assert r.status_code == 422 and "n_variants" in r.json()["message"], r.text
