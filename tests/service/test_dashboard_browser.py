"""The dashboard at ``/dashboard`` in a real headless Chromium against the real service (memo §2.3).

The service runs with an admin key under uvicorn on a free 127.0.0.1 port; the
simulated client drives generate + feedback traffic; a rollout is started with
a registered copy of the served version and forced to ``ab``. The page must
load without a console error or a failed request, draw data in every plotly
chart, explain a decision (five named features, the heatmap, a what-if) and
roll back from its controls. Screenshots are saved under the test's tmp_path
(the paths are printed). Debian's chromium is used (never ``playwright install``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.service.routes import dashboard

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ADMIN = "admin-dashboard-test-key"
TRAFFIC = "admin-traffic-test-key"  # the simulated client's own key: its generates and feedback (well over the
# per-key rate limit of 50 req/s on a slow machine) must not spend the page's allowance (429s on its polls)
REASON = "dashboard test: rollback from the page"
# the charts fed by /v1/monitor and /v1/rollout; the explanation's two come after a click
LIVE_CHARTS = ("chart-gp30", "chart-uplift", "chart-override", "chart-conversion", "chart-errors", "chart-latency",
               "chart-risk", "chart-exploration", "chart-shares")  # fmt: skip
EXPLANATION_CHARTS = ("top5-heatmap", "chart-attributions")
# JS: ids of the given chart divs that lack a data trace (threshold lines aside) with at least one number
MISSING_DATA_JS = """(ids) => ids.filter((id) => {
  const div = document.getElementById(id);
  if (!div || !Array.isArray(div.data)) return true;
  const num = (v) => typeof v === "number" && Number.isFinite(v);
  return !div.data.some((t) => {
    if (t.meta && t.meta.role === "threshold") return false;
    let vals = t.y;
    if (t.type === "heatmap") vals = [].concat(...(t.z || []));
    else if (t.type === "pie") vals = t.values;
    else if (t.orientation === "h") vals = t.x;
    return Array.isArray(vals) && vals.some(num);
  });
})"""


# -- the routes alone (fast: no model, no browser) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def routes() -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(dashboard.router)
    with TestClient(app) as c:
        yield c


def test_page_and_static_files_are_served_without_a_cdn(routes: TestClient) -> None:
    page = routes.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text and "http://" not in page.text.replace("http://www.w3.org", "")
    assert "__PLOTLY_VERSION__" not in page.text and "/dashboard/static/plotly.min.js?v=" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    js = routes.get("/dashboard/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "X-API-Key" in js.text
    css = routes.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    again = routes.get("/dashboard/static/dashboard.css", headers={"If-None-Match": css.headers["etag"]})
    assert again.status_code == 304
    plotly = routes.get("/dashboard/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith("text/javascript")
    assert "max-age=31536000" in plotly.headers["cache-control"] and len(plotly.content) > 1_000_000
    assert routes.head("/dashboard/static/plotly.min.js").status_code == 200
    assert not any(path.startswith("/dashboard") for path in routes.get("/openapi.json").json()["paths"])


@pytest.mark.parametrize(
    "name", ["nope.js", "dashboard.html", "..%2Fdashboard.py", "%2E%2E", "..%2F..%2Fconfig.py", "dashboard.py"]
)
def test_static_serves_nothing_outside_its_folder(routes: TestClient, name: str) -> None:
    assert routes.get(f"/dashboard/static/{name}").status_code == 404


# -- the page in a browser against the real service --------------------------------------------------------------
def _browser_or_skip() -> Any:
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright; never `playwright install`)"
    if reason is None and not Path(CHROMIUM).exists():
        reason = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(pred: Callable[[], Any], seconds: float, what: str) -> Any:
    end = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds:g} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def service(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real service with an admin key on 127.0.0.1, a rollout in ``ab`` and simulated traffic flowing."""
    import uvicorn

    from aidg.demo.challengers import register_variant
    from aidg.demo.traffic import SimulatedClient
    from aidg.service import create_app

    tmp = tmp_path_factory.mktemp("dashboard")
    base = str(trained["report"].get("version") or "1")
    challenger = register_variant(trained["settings"], base_version=base, kind="copy")
    settings = Settings(
        home=Path(trained["settings"].home),
        service={"data": trained["data"], "model_version": base},
        database_url=f"sqlite:///{tmp / 'decisions.sqlite'}",
        api_keys={ADMIN: {"role": "admin"}, TRAFFIC: {"role": "admin"}},
        # 30 simulated seconds a second: the series' 2 hours are 4 real minutes (2-second points); no trigger may
        # fire on a few hundred decisions (an auto-rollback would take the page's rollback from it)
        monitor={
            "time_scale": 30.0,
            "bucket_seconds": 1.0,
            "flush_seconds": 0.5,
            "eval_seconds": 0.5,
            "min_samples": 1_000_000,
        },
    )
    app = create_app(settings)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="dashboard-test-server", daemon=True)
    thread.start()
    traffic: SimulatedClient | None = None
    runner: threading.Thread | None = None
    try:
        _until(lambda: server.started or not thread.is_alive(), 120, "the service to start")
        assert server.started, "the service did not start"
        http = httpx.Client(base_url=url, headers={"X-API-Key": ADMIN}, timeout=30.0)
        r = http.post("/v1/rollout/start", json={"challenger": challenger, "reason": "dashboard test: start"})
        assert r.status_code == 200, r.text
        r = http.post("/v1/rollout/advance", json={"reason": "dashboard test: forced to ab", "force": True})
        assert r.status_code == 200 and r.json()["state"] == "ab", r.text
        merchants = list(map(str, app.state.engine.model.ctx.merchant_ids))
        traffic = SimulatedClient(url, trained["world"], merchants, api_key=TRAFFIC, rate=25.0,
                                  conversion_delay_s=0.3, gp30_delay_s=0.8, seed=3)  # fmt: skip
        runner = threading.Thread(target=traffic.run, kwargs={"seconds": 300.0}, name="dashboard-traffic", daemon=True)
        runner.start()

        def armed() -> bool:  # every arm answered with a GP30, so every chart has something to draw
            m = http.get("/v1/monitor").json()
            arms = m["series"]["arms"]
            return all(any(v is not None for v in arms[a]["gp30_proxy"]) for a in ("champion", "challenger", "explore"))

        _until(armed, 90, "GP30 feedback in every arm of /v1/monitor")
        yield {"url": url, "http": http, "challenger": challenger, "traffic": traffic}
        http.close()
    finally:
        if traffic is not None:
            traffic.stop()
        if runner is not None:
            runner.join(15)
        server.should_exit = True
        thread.join(15)


def _shots(tmp_path: Path, page: Any, name: str, saved: list[Path]) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, timeout=30_000)
    saved.append(path)


@pytest.mark.slow
def test_dashboard_in_a_browser(service: dict[str, Any], tmp_path: Path) -> None:
    sync_playwright = _browser_or_skip()
    url, http = service["url"], service["http"]
    problems: list[str] = []
    saved: list[Path] = []
    t0 = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            # without a key: the banner says what to do (those 401s are the point here, not counted)
            bare = browser.new_page()
            bare.set_default_timeout(20_000)
            bare.goto(f"{url}/dashboard", wait_until="load")
            bare.wait_for_selector("#error-banner:not([hidden])")
            assert "enter an admin key" in (bare.text_content("#error-banner") or "")
            bare.close()

            ctx = browser.new_context(viewport={"width": 1500, "height": 1000})
            ctx.add_init_script(f"localStorage.setItem('aidg.dashboard.apiKey', {ADMIN!r})")
            page = ctx.new_page()
            page.set_default_timeout(30_000)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:"))
                    else problems.append(f"left 127.0.0.1: {r.url}"))  # fmt: skip
            page.goto(f"{url}/dashboard", wait_until="load")
            assert page.evaluate("typeof Plotly") == "object"
            page.wait_for_function("() => document.getElementById('rollout-state').textContent === 'ab'")
            page.wait_for_function(f"() => ({MISSING_DATA_JS})({list(LIVE_CHARTS)!r}).length === 0", timeout=45_000)
            assert page.evaluate(MISSING_DATA_JS, list(LIVE_CHARTS)) == []
            assert page.locator("#kpi-tiles .tile").count() >= 6
            assert page.is_hidden("#error-banner")
            assert page.locator("#transitions tbody tr[data-testid=transition]").count() >= 2

            # a decision's explanation: five named features, the heatmap, attributions, a what-if
            page.wait_for_selector("#decision-list tr[data-decision-id]")
            page.uncheck("#auto-refresh")  # hold the list still while clicking
            row = page.locator("#decision-list tr[data-decision-id]").first
            decision_id = row.get_attribute("data-decision-id")
            row.click()
            page.wait_for_function("() => document.querySelectorAll('#top5-list li').length === 5", timeout=60_000)
            names = page.locator("#top5-list .feature-name").all_text_contents()
            assert len(names) == 5 and all(n.strip() and n.strip() != "–" for n in names), names
            page.wait_for_function(f"() => ({MISSING_DATA_JS})({list(EXPLANATION_CHARTS)!r}).length === 0")
            features = page.evaluate("() => document.getElementById('top5-heatmap').data[0].x")
            assert len(features) >= 5
            source = page.text_content("#top5-source") or ""
            if "from attention" in source:
                assert set(names) <= set(features)
            else:  # flat attention: the chosen variant's top five are its attributions'
                assert "from attributions" in source, source
            assert decision_id and decision_id in (page.text_content("#explanation-title") or "")
            ex = http.get(f"/v1/decisions/{decision_id}/explanation").json()
            assert (page.text_content("#explanation-verdict") or "").strip() == ex["verdict"]["text"]  # the first line
            shown_rules = page.locator("#rules li").all_text_contents()  # each with its support and precision
            with_stats = [r for r in shown_rules if "support " in r and "precision " in r]
            assert shown_rules and with_stats == [r for r in shown_rules if ":" in r], shown_rules
            age = page.text_content("#prototypes-age") or ""  # the prototypes' age beside the similar merchants
            assert age.startswith("prototypes ") and age.endswith(" h old") and ex["prototypes_age_hours"] >= 0
            page.fill("#whatif-value", "0.3")
            page.click("#whatif-submit")
            page.wait_for_selector("#whatif-result table", timeout=60_000)
            assert "discount_pct" in (page.text_content("#whatif-result") or "")
            page.check("#auto-refresh")
            _shots(tmp_path, page, "dashboard-ab", saved)

            # autonomy per segment: every segment's level, its override rate and agreement day by day; an admin's
            # pin through the rollout API shows in the table
            segs = sorted(http.get("/v1/rollout/autonomy").json()["segments"], key=lambda g: -g["decisions"])
            seg = segs[0]["segment"]
            r = http.post(f"/v1/rollout/autonomy/{quote(seg, safe='')}", json={"level": "apprentice", "reason": REASON})
            assert r.status_code == 200 and r.json()["pinned"], r.text
            page.wait_for_function(
                "(s) => [...document.querySelectorAll('#autonomy tr[data-testid=autonomy-row]')]"
                ".some((tr) => tr.dataset.segment === s && tr.textContent.includes('apprentice (pinned)'))",
                arg=seg,
            )
            assert page.locator("#autonomy tr[data-testid=autonomy-row]").count() == len(segs)
            autonomy_charts = ["chart-autonomy-override", "chart-autonomy-agreement"]
            page.wait_for_function(f"() => ({MISSING_DATA_JS})({autonomy_charts!r}).length === 0")
            assert "segments" in (page.text_content("#autonomy-summary") or "")

            # rollback from the page's controls
            page.fill("#reason", REASON)
            page.click("#btn-rollback")
            page.wait_for_function("() => document.getElementById('rollout-state').textContent === 'rolled_back'")
            assert "rolled_back" in (page.text_content("#action-result") or "")
            r = http.get("/v1/rollout")
            assert r.status_code == 200 and r.json()["state"] == "rolled_back"
            last = r.json()["transitions"][0]
            assert last["action"] == "rollback" and last["reason"] == REASON and last["to"] == "rolled_back"
            page.wait_for_function(
                "(reason) => [...document.querySelectorAll('#transitions td')].some((td) => td.textContent === reason)",
                arg=REASON,
            )
            page.wait_for_timeout(2500)  # one more refresh after the rollback, still without an error
            _shots(tmp_path, page, "dashboard-rolled-back", saved)
            assert page.evaluate(MISSING_DATA_JS, list(LIVE_CHARTS + EXPLANATION_CHARTS)) == []
            ctx.close()
        finally:
            browser.close()
    for path in saved:
        print(f"screenshot: {path}")
    out = os.environ.get("AIDG_DASHBOARD_SHOTS")  # optional: keep the screenshots somewhere else too
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for path in saved:
            shutil.copy(path, Path(out) / path.name)
    print(f"browser part: {time.monotonic() - t0:.1f} s")
    assert problems == [], "\n".join(problems)
