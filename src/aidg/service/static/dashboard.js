/* AIDG live monitor (memo §2.3). Plain JS, no build step; every chart is plotly.js, served by the service itself.
 *
 * Reads GET /v1/monitor, GET /v1/rollout and GET /v1/decisions?limit=20 every 2 s while traffic flows (every
 * 10 s when nothing moves), with the X-API-Key typed into the header (kept in localStorage). Rollout controls
 * POST /v1/rollout/{action}; a decision's explanation comes from GET /v1/decisions/{id}/explanation.
 * Everything the server says is rendered through textContent (never innerHTML) and read defensively: a
 * missing or null field shows as "–", never as an error.
 */
(function () {
  "use strict";

  const KEY_STORE = "aidg.dashboard.apiKey";
  const FAST_MS = 2000;
  const SLOW_MS = 10000;
  const IDLE_TICKS = 3; // unchanged polls before slowing down
  const ARMS = ["champion", "challenger", "explore"];
  const COLORS = { champion: "#2f6fde", challenger: "#e4572e", explore: "#17a398", all: "#5b6478" };
  const THRESHOLD_COLOR = "#d7263d";
  const SEVERITY_ORDER = { P0: 0, P1: 1, P2: 2 };
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  const state = {
    timer: null,
    running: false,
    again: false,
    lastTotal: null,
    idle: 0,
    monitor: null,
    selected: null,
    explanation: null,
    decisionIds: "",
  };

  // ---------------------------------------------------------------------------------------------- helpers
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of [].concat(children || [])) {
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const obj = (v) => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
  const arr = (v) => (Array.isArray(v) ? v : []);

  function fmt(v, kind) {
    if (!isNum(v)) return v === null || v === undefined || v === "" ? "–" : String(v);
    switch (kind) {
      case "pct":
        return (v * 100).toFixed(Math.abs(v) < 0.1 ? 2 : 1) + "%";
      case "signedpct":
        return (v >= 0 ? "+" : "") + (v * 100).toFixed(1) + "%";
      case "ms":
        return v.toFixed(v < 10 ? 1 : 0) + " ms";
      case "int":
        return Math.round(v).toLocaleString();
      default:
        return Math.abs(v) >= 1000 ? v.toLocaleString(undefined, { maximumFractionDigits: 0 })
          : Number(v.toPrecision(3)).toString();
    }
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  /** An ISO-8601 string (any zone) → local "YYYY-MM-DD HH:MM:SS", the form plotly's date axes read. */
  function localTime(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return null;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function shortTime(iso) {
    const s = localTime(iso);
    return s ? s.slice(11) : fmt(iso);
  }

  // ---------------------------------------------------------------------------------------------- API
  function apiKey() {
    try {
      return localStorage.getItem(KEY_STORE) || "";
    } catch (e) {
      return "";
    }
  }

  class ApiError extends Error {
    constructor(status, message, path) {
      super(message);
      this.status = status;
      this.path = path;
    }
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method: opts.method || "GET",
        headers,
        body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "the service does not answer (is it running?)", path);
    }
    let data = null;
    const text = await resp.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    if (!resp.ok) {
      const msg = (data && (data.message || data.detail)) || resp.statusText || "request failed";
      throw new ApiError(resp.status, typeof msg === "string" ? msg : JSON.stringify(msg), path);
    }
    return data;
  }

  function explainError(err) {
    if (err.status === 401) return `401: enter an admin key (${err.message})`;
    if (err.status === 403) return `403: this key is not an admin key (${err.message})`;
    if (err.status === 0) return err.message;
    return `${err.status} on ${err.path}: ${err.message}`;
  }

  function showError(msg) {
    const b = $("error-banner");
    b.textContent = msg;
    b.hidden = false;
    $("live-dot").className = "dot error";
  }

  function clearError() {
    $("error-banner").hidden = true;
    $("error-banner").textContent = "";
  }

  // ---------------------------------------------------------------------------------------------- charts
  function baseLayout(title, extra) {
    return Object.assign(
      {
        title: { text: title, font: { size: 13 }, x: 0.01, xanchor: "left" },
        margin: { l: 52, r: 14, t: 32, b: 40 },
        paper_bgcolor: "rgba(0,0,0,0)",
        plot_bgcolor: "rgba(0,0,0,0)",
        font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 11, color: "#1d2433" },
        legend: { orientation: "h", y: -0.18, x: 0, font: { size: 10 } },
        xaxis: { type: "date", gridcolor: "#eef1f6", automargin: true },
        yaxis: { gridcolor: "#eef1f6", zerolinecolor: "#d5dae3", automargin: true },
        uirevision: "keep",
        hovermode: "x unified",
        annotations: [],
      },
      extra || {},
    );
  }

  function hasPoints(trace) {
    let vals = trace.y;
    if (trace.type === "heatmap") vals = [].concat(...arr(trace.z));
    else if (trace.type === "pie") vals = trace.values;
    else if (trace.orientation === "h") vals = trace.x;
    return arr(vals).some(isNum);
  }

  function draw(id, traces, layout) {
    const div = $(id);
    if (!div || typeof Plotly === "undefined") return;
    const real = traces.filter((t) => !(t.meta && t.meta.role === "threshold"));
    if (!real.some(hasPoints)) {
      layout.annotations = (layout.annotations || []).concat([
        { text: "no data yet", xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false,
          font: { color: "#8a93a6", size: 13 } },
      ]);
    }
    Plotly.react(div, traces, layout, PLOT_CONFIG);
  }

  function thresholdTrace(x, value, label, dash) {
    const xs = x.length ? [x[0], x[x.length - 1]] : [];
    return {
      type: "scatter", mode: "lines", x: xs, y: xs.map(() => value), name: label,
      line: { color: THRESHOLD_COLOR, width: 1.5, dash: dash || "dash" }, hoverinfo: "skip",
      meta: { role: "threshold" },
    };
  }

  function armTraces(x, arms, key, extra) {
    return ARMS.map((arm) => Object.assign({
      type: "scatter", mode: "lines+markers", x, y: arr(obj(arms[arm])[key]).map((v) => (isNum(v) ? v : null)),
      name: arm, line: { color: COLORS[arm], width: 2 }, marker: { size: 4 }, connectgaps: false,
    }, extra || {}));
  }

  /** The series from two points before the first with any data (a service that just started would otherwise
   * squeeze its traffic into the right edge of a 2-hour axis); every list cut the same way. */
  function trimSeries(series) {
    const t = arr(series.t);
    const lists = [];
    for (const a of ARMS) for (const v of Object.values(obj(obj(series.arms)[a]))) lists.push(arr(v));
    for (const v of Object.values(obj(series.all))) lists.push(arr(v));
    let first = t.length;
    for (const l of lists) {
      const i = l.findIndex(isNum);
      if (i >= 0 && i < first) first = i;
    }
    const from = first >= t.length ? 0 : Math.max(0, first - 2);
    const cut = (v) => arr(v).slice(from);
    const arms = {};
    for (const a of ARMS) {
      arms[a] = {};
      for (const [k, v] of Object.entries(obj(obj(series.arms)[a]))) arms[a][k] = cut(v);
    }
    const all = {};
    for (const [k, v] of Object.entries(obj(series.all))) all[k] = cut(v);
    return { t: cut(t), arms, all };
  }

  function renderSeries(m) {
    const series = trimSeries(obj(m.series));
    const x = series.t.map(localTime);
    const arms = series.arms;
    const th = obj(m.thresholds);
    const pctAxis = { gridcolor: "#eef1f6", tickformat: ".0%", rangemode: "tozero", automargin: true };

    // GP30 proxy with the rollback line: champion × (1 − gp30_drop), point by point
    const gp = armTraces(x, arms, "gp30_proxy");
    if (isNum(th.gp30_drop)) {
      const champ = arr(obj(arms.champion).gp30_proxy);
      gp.push({
        type: "scatter", mode: "lines", x, y: champ.map((v) => (isNum(v) ? v * (1 - th.gp30_drop) : null)),
        name: `rollback: champion × ${fmt(1 - th.gp30_drop)}`, connectgaps: true, hoverinfo: "skip",
        line: { color: THRESHOLD_COLOR, width: 1.5, dash: "dash" }, meta: { role: "threshold" },
      });
    }
    draw("chart-gp30", gp, baseLayout("GP30 proxy"));

    const up = armTraces(x, arms, "gp30_uplift_proxy");
    up.push(thresholdTrace(x, 0, "no uplift", "dot"));
    draw("chart-uplift", up, baseLayout("GP30 uplift proxy vs current deal", {
      yaxis: Object.assign({}, pctAxis, { rangemode: "normal" }) }));

    const ov = armTraces(x, arms, "override_rate");
    if (isNum(th.override_rate_p1)) ov.push(thresholdTrace(x, th.override_rate_p1, `P1 alert ${fmt(th.override_rate_p1, "pct")}`));
    draw("chart-override", ov, baseLayout("Override rate", { yaxis: pctAxis }));

    const conv = armTraces(x, arms, "conversion");
    for (const arm of ARMS) {
      conv.push({
        type: "scatter", mode: "lines", x, y: arr(obj(arms[arm]).conversion_baseline).map((v) => (isNum(v) ? v : null)),
        name: `${arm} baseline`, line: { color: COLORS[arm], width: 1.2, dash: "dot" }, connectgaps: false,
      });
    }
    draw("chart-conversion", conv, baseLayout("Conversion vs baseline (dotted)", { yaxis: pctAxis }));

    const err = armTraces(x, arms, "error_rate");
    if (isNum(th.error_rate)) err.push(thresholdTrace(x, th.error_rate, `alert ${fmt(th.error_rate, "pct")}`));
    draw("chart-errors", err, baseLayout("Error rate", { yaxis: pctAxis }));

    const lat = armTraces(x, arms, "latency_p95_ms");
    if (isNum(th.latency_ms_p1)) lat.push(thresholdTrace(x, th.latency_ms_p1, `P1 alert ${fmt(th.latency_ms_p1, "ms")}`));
    draw("chart-latency", lat, baseLayout("Latency p95 (ms)", {
      yaxis: { gridcolor: "#eef1f6", rangemode: "tozero", ticksuffix: " ms", automargin: true } }));

    // exploration over time (all arms together)
    const all = obj(series.all);
    const clean = (k) => arr(all[k]).map((v) => (isNum(v) ? v : null));
    draw("chart-exploration", [
      { type: "scatter", mode: "lines+markers", x, y: clean("exploration_rate"), name: "exploration rate",
        line: { color: COLORS.explore, width: 2 }, marker: { size: 4 } },
      { type: "scatter", mode: "lines+markers", x, y: clean("explore_success_rate"), name: "success rate",
        line: { color: "#7a4fd6", width: 2 }, marker: { size: 4 } },
      { type: "scatter", mode: "lines", x, y: clean("active_variants"), name: "active variants", yaxis: "y2",
        line: { color: "#8a93a6", width: 1.5, dash: "dot" } },
    ], baseLayout("Exploration", {
      yaxis: pctAxis,
      yaxis2: { overlaying: "y", side: "right", showgrid: false, tickformat: "d", title: { text: "variants" },
        range: [0, Math.max(5, ...clean("active_variants").filter(isNum)) * 1.1] },
      margin: { l: 52, r: 48, t: 32, b: 40 },
    }));
  }

  function renderRisk(m) {
    const h = obj(m.risk_histogram);
    const edges = arr(h.edges).filter(isNum);
    const counts = obj(h.counts);
    if (edges.length < 2) {
      draw("chart-risk", [], baseLayout("Risk score", { xaxis: { title: { text: "risk" } } }));
      return;
    }
    const centers = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
    const widths = edges.slice(0, -1).map((e, i) => edges[i + 1] - e);
    const labels = edges.slice(0, -1).map((e, i) => `${fmt(e)}–${fmt(edges[i + 1])}`);
    const traces = ARMS.filter((a) => Array.isArray(counts[a])).map((arm) => {
      const c = counts[arm].map((v) => (isNum(v) ? v : 0));
      const total = c.reduce((s, v) => s + v, 0);
      return {
        type: "bar", x: centers, y: c.map((v) => (total ? v / total : 0)), width: widths.map((w) => w / 3.3),
        name: `${arm} (${fmt(total, "int")})`, marker: { color: COLORS[arm] }, customdata: c.map((v, i) => [v, labels[i]]),
        hovertemplate: `${arm}: %{customdata[0]} decisions (%{y:.0%}) at risk %{customdata[1]}<extra></extra>`,
      };
    });
    draw("chart-risk", traces, baseLayout("Risk score of chosen deals (share of each arm)", {
      barmode: "group", bargap: 0.05, hovermode: "closest",
      xaxis: { type: "linear", range: [edges[0], edges[edges.length - 1]], gridcolor: "#eef1f6", automargin: true },
      yaxis: { tickformat: ".0%", gridcolor: "#eef1f6", rangemode: "tozero", automargin: true },
    }));
  }

  function renderShares(r) {
    const shares = obj(r && r.shares);
    const names = ARMS.filter((a) => isNum(shares[a]));
    draw("chart-shares", [{
      type: "pie", labels: names, values: names.map((a) => shares[a]), hole: 0.55, sort: false,
      marker: { colors: names.map((a) => COLORS[a]) }, textinfo: "label+percent", hoverinfo: "label+percent",
    }], {
      title: { text: "Traffic share by arm", font: { size: 13 }, x: 0.01, xanchor: "left" },
      margin: { l: 10, r: 10, t: 30, b: 10 }, showlegend: false, paper_bgcolor: "rgba(0,0,0,0)",
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 11 }, uirevision: "keep",
      annotations: [],
    });
  }

  // ---------------------------------------------------------------------------------------------- tiles
  const TILES = [
    { key: "gp30_proxy", name: "GP30 proxy" },
    { key: "gp30_uplift_proxy", name: "GP30 uplift proxy", kind: "signedpct" },
    { key: "override_rate", name: "Override rate", kind: "pct", threshold: "override_rate_p1" },
    { key: "conversion", name: "Conversion", kind: "pct", vs: "conversion_baseline" },
    { key: "error_rate", name: "Error rate", kind: "pct", threshold: "error_rate" },
    { key: "latency_p95_ms", name: "Latency p95", kind: "ms", threshold: "latency_ms_p1" },
    { key: "cache_hit_rate", name: "Cache hit rate", kind: "pct", below: "cache_hit_p2" },
    { key: "decisions", name: "Decisions", kind: "int" },
  ];
  const WINDOWS = [["1h", "1 h"], ["2h", "2 h"], ["7d", "7 d"]];

  function renderTiles(m) {
    const arm = $("tiles-arm").value || "all";
    const windows = obj(m.windows);
    const th = obj(m.thresholds);
    const rt = obj(obj(windows.realtime)[arm]);
    const box = clear($("kpi-tiles"));
    for (const t of TILES) {
      const v = rt[t.key];
      let warn = false;
      if (t.threshold && isNum(v) && isNum(th[t.threshold])) warn = v > th[t.threshold];
      if (t.below && isNum(v) && isNum(th[t.below])) warn = v < th[t.below];
      const big = el("div", { class: "big", text: fmt(v, t.kind) });
      if (t.vs) big.appendChild(el("span", { class: "vs", text: `baseline ${fmt(rt[t.vs], t.kind)}` }));
      const win = el("div", { class: "win" }, WINDOWS.map(([w, label]) =>
        el("div", {}, [el("span", { text: label }), el("b", { text: fmt(obj(obj(windows[w])[arm])[t.key], t.kind) })])));
      box.appendChild(el("div", { class: warn ? "tile warn" : "tile", "data-testid": `tile-${t.key}`, id: `tile-${t.key}` },
        [el("div", { class: "name", text: `${t.name} · real-time` }), big, win]));
    }
  }

  function renderAlerts(m) {
    const alerts = arr(m.alerts).slice().sort((a, b) =>
      (SEVERITY_ORDER[a.severity] ?? 9) - (SEVERITY_ORDER[b.severity] ?? 9));
    const list = clear($("alerts"));
    const count = $("alert-count");
    count.textContent = String(alerts.length);
    count.className = alerts.some((a) => a.severity === "P0" || a.severity === "P1") ? "pill hot" : "pill";
    if (!alerts.length) {
      list.appendChild(el("li", { class: "ok", text: "no alert firing" }));
      return;
    }
    for (const a of alerts) {
      const sev = ["P0", "P1", "P2"].includes(a.severity) ? a.severity : "P2";
      list.appendChild(el("li", { class: `alert sev-${sev}`, "data-severity": sev }, [
        el("span", { class: "sev", text: fmt(a.severity) }),
        el("span", { text: a.message || a.rule || "alert" }),
        el("span", { class: "meta",
          text: `${fmt(a.rule)} · arm ${fmt(a.arm)} · value ${fmt(a.value)} vs threshold ${fmt(a.threshold)}` }),
      ]));
    }
  }

  function renderExploration(m) {
    const e = obj(m.exploration);
    $("exploration-rate").textContent = fmt(e.rate, "pct") + (e.held ? " (held)" : "");
    $("exploration-active").textContent = fmt(e.active_variants, "int");
    $("exploration-success").textContent = fmt(e.success_rate, "pct");
    $("exploration-decisions").textContent = fmt(e.explore_decisions, "int");
  }

  // ---------------------------------------------------------------------------------------------- rollout
  function renderRollout(r) {
    if (!r) return;
    const s = $("rollout-state");
    s.textContent = r.state || "–";
    s.className = `state s-${r.state || "none"}`;
    $("rollout-champion").textContent = fmt(r.champion);
    $("rollout-challenger").textContent = r.challenger && r.challenger_loaded === false
      ? `${r.challenger} (loading …)` : fmt(r.challenger);
    $("rollout-share").textContent = fmt(r.challenger_share, "pct");
    $("rollout-step").textContent = fmt(r.step);
    $("rollout-paused").textContent = r.paused ? "yes" : "no";
    $("rollout-next").textContent = r.next_step_at ? localTime(r.next_step_at) || r.next_step_at : "–";
    $("rollout-revision").textContent = fmt(r.revision);
    const g = r.gate;
    const gate = clear($("rollout-gate"));
    if (g && typeof g === "object") {
      gate.appendChild(el("span", { class: g.passed ? "up" : "down", text: g.passed ? "passed " : "refused " }));
      gate.appendChild(document.createTextNode(
        `(challenger ≥ ${fmt(g.challenger_lower)}, champion ≥ ${fmt(g.champion_lower)}, ` +
        `shortfall ${fmt(g.shortfall)}, n ${fmt(g.n, "int")})`));
    } else {
      gate.textContent = "not evaluated yet";
    }
    renderShares(r);
    if (Array.isArray(r.transitions)) renderTransitions(r.transitions);
  }

  function renderTransitions(rows) {
    const body = clear($("transitions").tBodies[0]);
    if (!rows.length) {
      body.appendChild(el("tr", {}, [el("td", { colspan: 5, class: "muted", text: "none yet" })]));
      return;
    }
    for (const t of rows) {
      body.appendChild(el("tr", { "data-testid": "transition" }, [
        el("td", { text: shortTime(t.at), title: localTime(t.at) || fmt(t.at) }),
        el("td", {}, [`${fmt(t.from)} → `, el("b", { text: fmt(t.to) })]),
        el("td", { text: fmt(t.action) }),
        el("td", { text: fmt(t.actor) }),
        el("td", { class: "why", text: fmt(t.reason) }),
      ]));
    }
  }

  // the autonomy dial: per segment its level now, and day by day its override rate and agreement (the level that
  // day in the hover); segments with the most decisions first, the 8 busiest drawn
  function renderAutonomy(a) {
    const segs = arr(a && a.segments).slice().sort((x, y) => (y.decisions || 0) - (x.decisions || 0));
    const shares = obj(a && a.level_shares);
    $("autonomy-summary").textContent = segs.length
      ? `${segs.length} segments (${fmt(a.segment_by)}): ` + ["apprentice", "copilot", "autopilot"]
        .map((l) => `${fmt(shares[l], "pct")} ${l}`).join(" · ")
      : "no segments";
    const body = clear($("autonomy").tBodies[0]);
    if (!segs.length) {
      body.appendChild(el("tr", {}, [el("td", { colspan: 6, class: "muted", text: "no data yet" })]));
    }
    for (const g of segs) {
      body.appendChild(el("tr", { "data-testid": "autonomy-row", "data-segment": g.segment }, [
        el("td", { text: fmt(g.segment) }),
        el("td", {}, [el("b", { class: `level ${g.level}`, text: fmt(g.level) }), g.pinned ? " (pinned)" : ""]),
        el("td", { text: g.since ? shortTime(g.since) : "start", title: g.since ? localTime(g.since) : "" }),
        el("td", { text: fmt(g.decisions, "int") }),
        el("td", { text: fmt(g.agreement, "pct") }),
        el("td", { text: fmt(g.override_rate, "pct") }),
      ]));
    }
    const busy = segs.filter((g) => arr(g.series).length).slice(0, 8);
    const line = (g, key) => ({
      type: "scatter", mode: "lines+markers", name: g.segment,
      x: arr(g.series).map((d) => d.day), y: arr(g.series).map((d) => d[key]),
      customdata: arr(g.series).map((d) => [d.level, d.decisions]),
      hovertemplate: `${g.segment}: %{y:.0%} on %{x} (%{customdata[0]}, %{customdata[1]} decisions)<extra></extra>`,
    });
    const layout = (title) => baseLayout(title, {
      xaxis: { type: "category", title: { text: "day (UTC)" }, automargin: true },
      yaxis: { tickformat: ".0%", rangemode: "tozero", gridcolor: "#eef1f6", automargin: true },
    });
    draw("chart-autonomy-override", busy.map((g) => line(g, "override_rate")), layout("Override rate per segment"));
    draw("chart-autonomy-agreement", busy.map((g) => line(g, "agreement")), layout("Agreement per segment"));
  }

  async function rolloutAction(action) {
    const out = $("action-result");
    const reason = $("reason").value.trim();
    if (!reason) {
      out.className = "result err";
      out.textContent = `${action}: give a reason first (it is recorded in the transitions)`;
      $("reason").focus();
      return;
    }
    const body = { reason };
    if (action === "start") {
      const v = $("challenger-version").value.trim();
      if (!v) {
        out.className = "result err";
        out.textContent = "start: enter the challenger version";
        $("challenger-version").focus();
        return;
      }
      body.challenger = v;
    }
    if (action === "advance") body.force = $("force").checked;
    out.className = "result";
    out.textContent = `${action} …`;
    try {
      const r = await api(`/v1/rollout/${encodeURIComponent(action)}`, { method: "POST", body });
      renderRollout(r);
      out.className = "result ok";
      out.textContent = `${action}: done, state ${fmt(r && r.state)}`;
      $("reason").value = "";
      clearError();
    } catch (e) {
      out.className = "result err";
      out.textContent = e.status === 409 || e.status === 422 ? `${action} refused (${e.status}): ${e.message}`
        : `${action} failed: ${explainError(e)}`;
    }
    refreshNow();
  }

  // ---------------------------------------------------------------------------------------------- decisions
  function renderDecisions(payload) {
    const rows = arr(obj(payload).decisions);
    const ids = rows.map((d) => d.decision_id).join(",");
    if (ids === state.decisionIds) return; // nothing new: keep the rows (and a click in progress) as they are
    state.decisionIds = ids;
    const body = clear($("decision-list"));
    if (!rows.length) {
      body.appendChild(el("tr", {}, [el("td", { colspan: 7, class: "muted", text: "no decisions yet" })]));
      return;
    }
    for (const d of rows) {
      const tr = el("tr", {
        "data-testid": "decision-row", "data-decision-id": d.decision_id, tabindex: 0,
        class: d.decision_id === state.selected ? "selected" : null, title: d.decision_id,
      }, [
        el("td", { text: shortTime(d.created_at) }),
        el("td", { text: fmt(d.merchant_id) }),
        el("td", { class: `arm arm-${d.arm}`, text: fmt(d.arm) }),
        el("td", { text: fmt(d.model_version) }),
        el("td", { text: fmt(d.type) }),
        el("td", { text: fmt(d.score) }),
        el("td", { text: fmt(d.risk) }),
      ]);
      body.appendChild(tr);
    }
  }

  function onDecisionClick(ev) {
    const tr = ev.target.closest("tr[data-decision-id]");
    if (!tr) return;
    for (const r of $("decision-list").querySelectorAll("tr.selected")) r.classList.remove("selected");
    tr.classList.add("selected");
    loadExplanation(tr.dataset.decisionId);
  }

  async function loadExplanation(id) {
    state.selected = id;
    $("explanation-title").textContent = `loading ${id} …`;
    try {
      const ex = await api(`/v1/decisions/${encodeURIComponent(id)}/explanation`);
      if (state.selected !== id) return;
      state.explanation = ex;
      renderExplanation(ex);
    } catch (e) {
      $("explanation-title").textContent = `could not load ${id}: ${explainError(e)}`;
    }
  }

  /** Variant ids, the chosen first: in the order of ``variants`` (best score first) when the explanation carries
   * them, else of ``attention_top5``'s keys (a JS object lists integer keys ascending, not by score). */
  function variantOrder(ex) {
    const listed = arr(ex.variants).map((v) => String(obj(v).variant)).filter((k) => k !== "undefined");
    const keys = listed.length ? listed : Object.keys(obj(ex.attention_top5));
    const chosen = String(obj(ex.chosen).variant);
    return keys.includes(chosen) ? [chosen].concat(keys.filter((k) => k !== chosen)) : keys;
  }

  /** The chosen variant's top-5 as the explanation picked them (attention, or attributions where attention is
   * flat), with the source; else the served attention top-5. */
  function chosenTop5Source(ex) {
    const t5 = obj(obj(ex.top5)[String(obj(ex.chosen).variant)]);
    if (arr(t5.features).length) return { features: t5.features, source: t5.source, concentration: t5.attention_concentration };
    return { features: chosenTop5(ex), source: "attention", concentration: null };
  }

  function chosenTop5(ex) {
    const chosen = obj(ex.chosen);
    if (arr(chosen.top_features).length) return chosen.top_features;
    const top = obj(ex.attention_top5);
    const key = String(chosen.variant);
    if (Array.isArray(top[key])) return top[key];
    const first = Object.keys(top)[0];
    return first !== undefined ? arr(top[first]) : [];
  }

  const TERM_COLUMNS = [
    ["variant", "variant"], ["type", "type"], ["discount_pct", "discount", "pct"], ["price", "price"],
    ["duration_days", "days"], ["category_id", "category"], ["score", "score"], ["risk", "risk"],
    ["top", "top feature"],
  ];

  function renderVariantsTable(ex) {
    const chosen = obj(ex.chosen);
    const top = obj(ex.attention_top5);
    const full = {};
    for (const v of arr(ex.variants)) full[String(v.variant)] = v;
    const rows = variantOrder(ex).map((k) => {
      const base = full[k] || (String(chosen.variant) === k ? chosen : { variant: k });
      const t = arr(top[k])[0];
      return Object.assign({}, base, { variant: k, top: t ? `${t.feature} (${fmt(t.weight)})` : null });
    });
    if (!rows.length && chosen.variant !== undefined) rows.push(Object.assign({}, chosen, { top: null }));
    // a column only when most rows have it (the explanation may carry the terms of the chosen variant only)
    const has = (r, k) => r[k] !== undefined && r[k] !== null;
    const cols = TERM_COLUMNS.filter(([k]) => rows.filter((r) => has(r, k)).length * 2 > rows.length);
    const table = $("explanation-variants");
    const head = clear(table.tHead);
    head.appendChild(el("tr", {}, cols.map(([, label]) => el("th", { text: label }))));
    const body = clear(table.tBodies[0]);
    for (const r of rows) {
      const isChosen = String(r.variant) === String(chosen.variant);
      body.appendChild(el("tr", { class: isChosen ? "chosen" : null, "data-variant": r.variant },
        cols.map(([k, , kind]) => el("td", { text: k === "variant" && isChosen ? `${r.variant} ★` : fmt(r[k], kind) }))));
    }
  }

  function renderHeatmap(ex) {
    const top = Object.assign({}, obj(ex.attention_top5));
    const chosen = String(obj(ex.chosen).variant);
    let order = variantOrder(ex).slice(0, 12);
    if (!(chosen in top) && arr(obj(ex.chosen).top_features).length) { // the current deal, played instead
      top[chosen] = ex.chosen.top_features;
      order = [chosen].concat(order.slice(0, 11));
    }
    const label = (k) => (k !== chosen ? `variant ${k}`
      : obj(ex.chosen).type === "current" ? "current deal ★" : `variant ${k} ★`);
    const totals = new Map();
    for (const k of order) for (const f of arr(top[k])) {
      if (f && f.feature !== undefined) totals.set(f.feature, (totals.get(f.feature) || 0) + (isNum(f.weight) ? f.weight : 0));
    }
    const features = [...totals.entries()].sort((a, b) => b[1] - a[1]).map(([f]) => String(f));
    const y = order.map(label);
    const z = order.map((k) => {
      const w = new Map(arr(top[k]).map((f) => [String(f.feature), f.weight]));
      return features.map((f) => (isNum(w.get(f)) ? w.get(f) : null));
    });
    const text = order.map((k) => {
      const w = new Map(arr(top[k]).map((f) => [String(f.feature), f.value]));
      return features.map((f) => (w.has(f) ? `value ${fmt(w.get(f))}` : ""));
    });
    draw("top5-heatmap", [{
      type: "heatmap", x: features, y, z, text, colorscale: "Blues", reversescale: true, hoverongaps: false,
      colorbar: { title: { text: "weight" }, thickness: 12 },
      hovertemplate: "%{y}<br>%{x}: weight %{z:.3f}<br>%{text}<extra></extra>",
    }], baseLayout("Attention top-5 features per variant (★ chosen)", {
      xaxis: { type: "category", tickangle: -35, automargin: true },
      yaxis: { type: "category", autorange: "reversed", automargin: true },
      margin: { l: 90, r: 10, t: 32, b: 110 }, hovermode: "closest",
    }));
  }

  function renderAttributions(ex) {
    const attr = obj(ex.attributions);
    const sel = $("attribution-variant");
    const keys = Object.keys(attr);
    const previous = sel.value;
    clear(sel);
    for (const k of keys) sel.appendChild(el("option", { value: k, text: `variant ${k}` }));
    const chosen = String(obj(ex.chosen).variant);
    sel.value = keys.includes(previous) ? previous : keys.includes(chosen) ? chosen : keys[0] || "";
    drawAttributions(ex);
  }

  function drawAttributions(ex) {
    const k = $("attribution-variant").value;
    const rows = arr(obj(ex.attributions)[k]).filter((r) => r && isNum(r.attribution)).slice().reverse();
    draw("chart-attributions", [{
      type: "bar", orientation: "h", y: rows.map((r) => String(r.feature)), x: rows.map((r) => r.attribution),
      marker: { color: rows.map((r) => (r.attribution >= 0 ? "#2e9e5b" : "#d7263d")) },
      customdata: rows.map((r) => fmt(r.value)),
      hovertemplate: "%{y} = %{customdata}<br>attribution %{x:.4f}<extra></extra>",
    }], baseLayout(k ? `Integrated Gradients, variant ${k}` : "Integrated Gradients", {
      xaxis: { type: "linear", zeroline: true, zerolinecolor: "#9aa3b5", gridcolor: "#eef1f6", automargin: true },
      yaxis: { type: "category", automargin: true }, hovermode: "closest", showlegend: false,
      margin: { l: 10, r: 14, t: 32, b: 36 },
    }));
  }

  function renderExplanation(ex) {
    const chosen = obj(ex.chosen);
    const events = arr(ex.events);
    $("explanation-title").textContent =
      `decision ${fmt(ex.decision_id)} · merchant ${fmt(ex.merchant_id)} · model v${fmt(ex.model_version)} · ` +
      `chosen variant ${fmt(chosen.variant)} (${fmt(chosen.type)}) · feedback ${events.length ? events.map((e) => e.part).join(", ") : "none yet"}`;
    const deal = clear($("chosen-deal"));
    const terms = [
      ["type", fmt(chosen.type)], ["discount", fmt(chosen.discount_pct, "pct")], ["price", fmt(chosen.price)],
      ["days", fmt(chosen.duration_days)], ["category", fmt(chosen.category_id)], ["score", fmt(chosen.score)],
      ["risk", fmt(chosen.risk)],
    ];
    deal.appendChild(el("b", { text: `variant ${fmt(chosen.variant)}` }));
    for (const [k, v] of terms) deal.appendChild(el("span", {}, [el("span", { class: "muted", text: `${k} ` }), v]));
    const verdict = obj(ex.verdict);
    const v = $("explanation-verdict");
    v.textContent = verdict.text ? String(verdict.text) : "";
    v.className = "verdict " + (verdict.keep_current ? "keep" : "beat");
    const notes = clear($("explanation-notes"));
    for (const n of arr(ex.notes)) notes.appendChild(el("div", { text: String(n) }));

    const top5 = chosenTop5Source(ex);
    $("top5-source").textContent = `(from ${top5.source}` +
      (isNum(top5.concentration) ? `; attention ${fmt(top5.concentration)}× uniform` : "") + ")";
    const list = clear($("top5-list"));
    for (const f of top5.features) {
      list.appendChild(el("li", { "data-testid": "top5-feature" }, [
        el("b", { class: "feature-name", text: fmt(f.feature) }),
        el("span", { text: ` = ${fmt(f.value)}` }),
        el("span", { class: "w", text: isNum(f.attribution) ? `attribution ${fmt(f.attribution)}` : `weight ${fmt(f.weight)}` }),
      ]));
    }
    renderVariantsTable(ex);
    renderHeatmap(ex);
    renderAttributions(ex);

    const rules = clear($("rules"));
    // every rule shown with its support (training rows in its leaf) and precision (share labelled as it says)
    const said = (st) => (st ? ` (support ${fmt(st.support, "int")}, precision ${fmt(st.precision, "pct")})` : "");
    for (const [k, text] of Object.entries(obj(ex.rules))) {
      rules.appendChild(el("li", {}, [el("b", { text: `variant ${k}: ` }), String(text) + said(obj(ex.rule_stats)[k])]));
    }
    arr(ex.global_rules).forEach((text, i) => {
      rules.appendChild(el("li", { class: "global", text: `global: ${text}` + said(arr(ex.global_rule_stats)[i]) }));
    });
    if (!rules.firstChild) rules.appendChild(el("li", { class: "muted", text: "no rules" }));

    const age = ex.prototypes_age_hours;  // the prototypes are refreshed every 24 h (memo §1.2)
    $("prototypes-age").textContent = age === null || age === undefined ? "" : `prototypes ${Number(age).toFixed(1)} h old`;
    const sim = clear($("similar-merchants"));
    for (const s of arr(ex.similar_merchants)) {
      // a merchant-manager key sees no id: the description (category, city tier, shared traits, outcome)
      const who = s.merchant_id ? `${s.merchant_id} · ` : `#${fmt(s.rank)} · `;
      const tier = s.city_tier ? `tier-${s.city_tier} city` : "city tier unknown";
      const traits = arr(s.similar_in).map((t) => `${t.trait} ${fmt(t.theirs)} (yours ${fmt(t.yours)})`).join(", ");
      const out = obj(s.outcome);
      const result = `GP30 uplift ${fmt(out.mean_gp30_uplift)} over ${fmt(out.deals)} deals`;
      sim.appendChild(el("li", { text: `${who}${fmt(s.category)}, ${tier} · similarity ${fmt(s.similarity)} · ${result}` + (traits ? ` · alike in ${traits}` : "") }));
    }
    if (!sim.firstChild) sim.appendChild(el("li", { class: "muted", text: "none found" }));

    const vsel = $("whatif-variant");
    clear(vsel);
    for (const k of variantOrder(ex)) vsel.appendChild(el("option", { value: k, text: k === String(chosen.variant) ? `${k} ★` : k }));
    if (ex.what_if) renderWhatIf(ex.what_if);
    else clear($("whatif-result")).className = "result";
  }

  /** Green for a change for the better (less risk, more of anything else), red for worse. */
  function changeClass(name, change) {
    if (!isNum(change) || change === 0) return null;
    const better = name === "risk" ? change < 0 : change > 0;
    return better ? "up" : "down";
  }

  function renderWhatIf(w) {
    const out = clear($("whatif-result"));
    out.className = "result ok";
    const level = isNum(w.level) ? `${Math.round(w.level * 100)} % interval` : "interval";
    out.appendChild(el("div", { text: `${fmt(w.term)}: ${fmt(w.from)} → ${fmt(w.to)} (${level}, ${fmt(w.samples)} samples)` }));
    const rows = Object.entries(w).filter(([, v]) => v && typeof v === "object" && "change" in v);
    out.appendChild(el("table", { "data-testid": "whatif-table" }, [
      el("tr", {}, ["", "change", "low", "high"].map((h) => el("th", { text: h }))),
      ...rows.map(([k, v]) => el("tr", {}, [
        el("td", { text: k }),
        el("td", { class: changeClass(k, v.change), text: fmt(v.change) }),
        el("td", { text: fmt(v.low) }), el("td", { text: fmt(v.high) }),
      ])),
    ]));
  }

  async function onWhatIf(ev) {
    ev.preventDefault();
    const out = $("whatif-result");
    const id = state.selected;
    if (!id) {
      out.className = "result err";
      out.textContent = "pick a decision first";
      return;
    }
    const params = new URLSearchParams({
      variant: $("whatif-variant").value, term: $("whatif-term").value, value: $("whatif-value").value.trim(),
    });
    if (!params.get("value")) {
      out.className = "result err";
      out.textContent = "enter the new value";
      return;
    }
    out.className = "result";
    out.textContent = "predicting …";
    try {
      const ex = await api(`/v1/decisions/${encodeURIComponent(id)}/explanation?${params}`);
      if (ex && ex.what_if) renderWhatIf(ex.what_if);
      else {
        out.className = "result err";
        out.textContent = "the service returned no what-if";
      }
    } catch (e) {
      out.className = "result err";
      out.textContent = explainError(e);
    }
  }

  // ---------------------------------------------------------------------------------------------- refresh
  function totalDecisions(m) {
    const w = obj(obj(obj(m.windows)["7d"]).all).decisions;
    if (isNum(w)) return w;
    let n = 0;
    for (const a of ARMS) for (const v of arr(obj(obj(obj(m.series).arms)[a]).decisions)) if (isNum(v)) n += v;
    return n;
  }

  async function tick() {
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    clearTimeout(state.timer);
    let delay = FAST_MS;
    try {
      const [mon, roll, dec, aut] = await Promise.allSettled([
        api("/v1/monitor"), api("/v1/rollout"), api("/v1/decisions?limit=20"), api("/v1/rollout/autonomy"),
      ]);
      const failed = [mon, roll, dec, aut].filter((r) => r.status === "rejected").map((r) => r.reason);
      if (mon.status === "fulfilled" && mon.value) {
        const m = mon.value;
        state.monitor = m;
        renderTiles(m);
        renderAlerts(m);
        renderSeries(m);
        renderRisk(m);
        renderExploration(m);
        if (roll.status !== "fulfilled") renderRollout(m.rollout);
        const mr = obj(m.rollout);
        $("rollout-shadow").textContent = isNum(mr.shadow_records)
          ? `${fmt(mr.shadow_records, "int")}${isNum(mr.shadow_dropped) && mr.shadow_dropped ? ` (${fmt(mr.shadow_dropped, "int")} dropped)` : ""}`
          : "–";
        const total = totalDecisions(m);
        state.idle = state.lastTotal !== null && total === state.lastTotal ? state.idle + 1 : 0;
        state.lastTotal = total;
      }
      if (roll.status === "fulfilled") renderRollout(roll.value);
      if (dec.status === "fulfilled") renderDecisions(dec.value);
      if (aut.status === "fulfilled") renderAutonomy(aut.value);
      if (failed.length) {
        showError(explainError(failed[0]) + (failed.length > 1 ? ` (and ${failed.length - 1} more)` : ""));
        delay = SLOW_MS / 2;
      } else {
        clearError();
        const idle = state.idle >= IDLE_TICKS;
        delay = idle ? SLOW_MS : FAST_MS;
        $("live-dot").className = idle ? "dot idle" : "dot live";
        const when = new Date().toLocaleTimeString();
        $("last-updated").textContent = idle ? `updated ${when} · no new traffic, every ${SLOW_MS / 1000} s`
          : `updated ${when} · every ${FAST_MS / 1000} s`;
      }
    } catch (e) {
      showError(`the dashboard failed to draw: ${e && e.message ? e.message : e}`);
      delay = SLOW_MS;
    } finally {
      state.running = false;
      if (state.again) {
        state.again = false;
        delay = 0;
      }
      if ($("auto-refresh").checked || delay === 0) state.timer = setTimeout(tick, delay);
    }
  }

  function refreshNow() {
    state.idle = 0;
    clearTimeout(state.timer);
    tick();
  }

  function init() {
    if (typeof Plotly === "undefined") {
      showError("plotly.js did not load from /dashboard/static/plotly.min.js: the charts cannot be drawn");
    }
    $("api-key").value = apiKey();
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      try {
        localStorage.setItem(KEY_STORE, $("api-key").value.trim());
      } catch (e) {
        showError("this browser does not keep the key (localStorage unavailable)");
      }
      refreshNow();
    });
    $("auto-refresh").addEventListener("change", () => {
      if ($("auto-refresh").checked) refreshNow();
      else clearTimeout(state.timer);
    });
    $("tiles-arm").addEventListener("change", () => state.monitor && renderTiles(state.monitor));
    for (const b of document.querySelectorAll("#rollout-form button[data-action]")) {
      b.addEventListener("click", () => rolloutAction(b.dataset.action));
    }
    $("rollout-form").addEventListener("submit", (ev) => ev.preventDefault());
    $("decision-list").addEventListener("click", onDecisionClick);
    $("decision-list").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") onDecisionClick(ev);
    });
    $("attribution-variant").addEventListener("change", () => state.explanation && drawAttributions(state.explanation));
    $("whatif-form").addEventListener("submit", onWhatIf);
    tick();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
