/* tunnel-client operator UI: tabs over the JSON APIs of this listener. Plain JavaScript, no build
   step; every value reaches the page through textContent, never as HTML. */
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const LEVEL_RANK = { DEBUG: 10, INFO: 20, WARN: 30, ERROR: 40 };
  const MAX_LOG_ROWS = 2000;
  const state = {
    tab: "",
    status: null,
    trafficFilter: "",
    logsStarted: false,
    logPaused: false,
    logPending: [],
    logRows: 0,
    logLastSeq: 0,
    metricsPrev: null,
    charts: null,
  };

  // ---------------------------------------------------------------------- helpers

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const kid of kids) {
      if (kid === null || kid === undefined) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  function setText(id, value) {
    const e = $(id);
    if (e) e.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function pill(text, st) {
    return el("span", { class: "pill", "data-state": st || "neutral", text: text });
  }

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  function ago(iso) {
    if (!iso) return "never";
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return iso;
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  function duration(seconds) {
    const s = Math.floor(seconds || 0);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    return s + " s";
  }

  function clock(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso || "";
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function bytes(n) {
    if (!(n >= 0)) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function every(ms, fn) {
    fn();
    return setInterval(fn, ms);
  }

  // ---------------------------------------------------------------------- header badges

  async function refreshBadges() {
    await Promise.all([
      fetch("/healthz", { cache: "no-store" }).then(async (r) => {
        badge("badge-health", r.ok ? "ok" : "bad", r.ok ? (await r.text()) : "HTTP " + r.status);
      }).catch(() => badge("badge-health", "bad", "unreachable")),
      fetch("/readyz", { cache: "no-store" }).then(async (r) => {
        const text = await r.text();
        badge("badge-ready", r.ok ? "ok" : "bad", r.ok ? "ready" : "not ready", text);
        const big = $("ov-ready");
        big.dataset.state = r.ok ? "ok" : "bad";
        big.textContent = r.ok ? "Ready" : "Not ready";
        setText("ov-ready-reason", text);
      }).catch(() => badge("badge-ready", "bad", "unreachable")),
    ]);
  }

  function badge(id, st, text, title) {
    const b = $(id);
    b.dataset.state = st;
    b.querySelector("b").textContent = text;
    if (title !== undefined) b.title = "GET /readyz: " + title;
  }

  // ---------------------------------------------------------------------- overview + channels

  async function refreshStatus() {
    let s;
    try {
      s = await getJSON("/api/status");
    } catch (e) {
      return;
    }
    state.status = s;
    const meta = s.tunnel_metadata || {};
    setText("tunnel-name", meta.name && meta.name !== s.control_plane_tunnel_id ? meta.name : "");
    setText("ov-tunnel-id", s.control_plane_tunnel_id);
    setText("ov-tunnel-name", meta.name || (s.tunnel_metadata_error ? "unavailable" : "…"));
    setText("ov-tunnel-description", meta.description || (s.tunnel_metadata_error || ""));
    const poll = s.control_plane_poll || {};
    const pollPill = $("ov-poll-state");
    pollPill.dataset.state = poll.ok ? "ok" : poll.last_error ? "bad" : "warn";
    pollPill.textContent = poll.ok ? "ok" : poll.last_error ? "failing (" + poll.consecutive_failures + ")" : "not yet reached";
    setText("ov-poll-last", poll.last_success ? ago(poll.last_success) : poll.ok ? "first long poll still open" : "never");
    $("ov-poll-last").title = poll.last_success || "";
    setText("ov-poll-error", poll.last_error || "none");
    setText("ov-cp-url", s.control_plane_base_url);
    setText("ov-cp-inflight", s.control_plane_max_inflight);
    setText("ov-cp-timeout", s.control_plane_poll_timeout + " (+" + s.control_plane_poll_deadline_guardrail + " guardrail)");
    setText("ov-version", s.version);
    setText("ov-uptime", duration(s.uptime_seconds));
    setText("ov-started", s.started_at);
    setText("ov-listen", location.host + (s.health_listen_addr !== location.host ? "  (configured " + s.health_listen_addr + ")" : ""));
    setText("ov-instance", s.client_instance_id);
    const p = s.process || {};
    setText("ov-process", bytes(p.rss_bytes) + " RSS · " + p.open_fds + " fds · " + p.asyncio_tasks + " tasks");
    const warnings = s.warnings || [];
    $("ov-warnings-card").classList.toggle("hidden", warnings.length === 0);
    $("ov-warnings").replaceChildren(...warnings.map((w) => el("li", { text: w })));
    renderChannels(s.channels || []);
    $("ov-channels").replaceChildren(...(s.channels || []).flatMap((c) => [
      el("dt", { text: c.name }),
      el("dd", {}, pill(c.probe_status, PROBE_STATE[c.probe_status]), " ", el("span", { class: "muted", text: c.transport_kind })),
    ]));
    if (s.log_level) setLevelBadge(s.log_level);
    refreshActivity();
  }

  async function refreshActivity() {
    let t;
    try {
      t = await getJSON("/api/traffic?limit=1");
    } catch (e) {
      return;
    }
    setText("ov-relayed", t.total + " calls");
    setText("ov-failed", t.failed);
    const c = t.calls[0];
    setText("ov-last-call", c ? (c.method || c.kind) + " on " + c.channel + ", " + c.outcome + ", " + ago(c.time) : "none yet");
  }

  const PROBE_STATE = { ok: "ok", "auth-required": "warn", timeout: "warn", failed: "bad", pending: "neutral" };

  function renderChannels(channels) {
    const rows = channels.map((c) => {
      const details = (c.details || []).map((d) => d.key + " " + d.value).join(" · ");
      return el("tr", { "data-channel": c.name },
        el("td", {}, el("b", { text: c.name })),
        el("td", { text: c.transport_kind }),
        el("td", {}, el("code", { text: c.target })),
        el("td", {}, pill(c.probe_status, PROBE_STATE[c.probe_status]),
          c.probe_error ? el("div", { class: "reason", text: c.probe_error }) : null),
        el("td", { class: "mono", text: details || "—" }));
    });
    $("channels-body").replaceChildren(...rows);
  }

  // ---------------------------------------------------------------------- traffic

  const OUTCOME_STATE = { ok: "ok", rpc_error: "warn", tool_error: "warn" };

  async function refreshTraffic() {
    let t;
    try {
      t = await getJSON("/api/traffic?limit=200");
    } catch (e) {
      return;
    }
    const f = state.trafficFilter.toLowerCase();
    const calls = t.calls.filter((c) => !f || [c.channel, c.method, c.outcome, c.kind, String(c.status)]
      .some((v) => String(v).toLowerCase().includes(f)));
    const rows = calls.map((c) => el("tr", { "data-method": c.method, "data-outcome": c.outcome },
      el("td", { class: "mono", title: c.time, text: clock(c.time) }),
      el("td", { text: c.channel }),
      el("td", {}, el("code", { text: c.method || "—" })),
      el("td", { text: c.kind }),
      el("td", { class: "num", text: c.status || "—" }),
      el("td", {}, pill(c.outcome.replace(/_/g, " "), OUTCOME_STATE[c.outcome] || "bad")),
      el("td", { class: "num", text: c.latency_ms.toFixed(1) + " ms" })));
    $("traffic-body").replaceChildren(...rows);
    $("traffic-empty").classList.toggle("hidden", rows.length > 0);
    setText("traffic-summary", t.total + " relayed since start · " + t.failed + " not ok · showing " + rows.length
      + " of the last " + t.capacity);
  }

  // ---------------------------------------------------------------------- metrics

  function parseProm(text) {
    const out = new Map();
    for (const line of text.split("\n")) {
      if (!line || line[0] === "#") continue;
      const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"/g;
        let lm;
        while ((lm = re.exec(m[2])) !== null) labels[lm[1]] = lm[2];
      }
      if (!out.has(m[1])) out.set(m[1], []);
      out.get(m[1]).push({ labels: labels, value: parseFloat(m[3]) });
    }
    return out;
  }

  function samples(prom, name) {
    // Exporters differ on the _total suffix of counters; accept either spelling.
    return prom.get(name) || prom.get(name + "_total") || prom.get(name.replace(/_total$/, "")) || [];
  }

  function total(prom, name) {
    return samples(prom, name).reduce((a, s) => a + (Number.isFinite(s.value) ? s.value : 0), 0);
  }

  function buckets(prom, name) {
    const by = new Map();
    for (const s of samples(prom, name + "_bucket")) {
      const le = s.labels.le === "+Inf" ? Infinity : parseFloat(s.labels.le);
      by.set(le, (by.get(le) || 0) + s.value);
    }
    return by;
  }

  function quantile(prev, cur, q) {
    const les = Array.from(cur.keys()).sort((a, b) => a - b);
    const deltas = les.map((le) => cur.get(le) - ((prev && prev.get(le)) || 0));
    const n = deltas[deltas.length - 1];
    if (!(n > 0)) return null;
    const target = q * n;
    let lower = 0, lowerCount = 0;
    for (let i = 0; i < les.length; i++) {
      if (deltas[i] >= target) {
        if (!Number.isFinite(les[i])) return lower;
        const span = deltas[i] - lowerCount;
        return lower + (les[i] - lower) * (span > 0 ? (target - lowerCount) / span : 1);
      }
      lower = les[i];
      lowerCount = deltas[i];
    }
    return lower;
  }

  const LATENCY = "command_end_to_end_latency_milliseconds";
  const COUNTERS = [
    ["commands_polled_total", "commands received from polls"],
    ["commands_enqueued_total", "commands accepted for processing"],
    ["commands_poll_cycles_total", "poll requests made"],
    ["commands_poll_errors_total", "failed polls"],
    ["commands_poll_retries_total", "polls retried after a backoff"],
    ["commands_queue_drops_total", "malformed commands dropped"],
    ["command_unsupported_channel_total", "commands for a channel with no target"],
    ["command_response_post_retries_total", "response POSTs retried"],
    ["command_deadline_expired_total", "commands dropped at their response deadline"],
    ["mcp_stdio_restarts_total", "stdio MCP server restarts"],
    ["commands_queue_capacity", "commands that may be held at once"],
    ["dispatcher_worker_pool_capacity", "MCP calls that may run at once"],
    ["readiness", "1 while /readyz answers 200"],
    ["liveness", "1 while the process serves"],
  ];

  function ensureCharts() {
    if (state.charts || !window.TCCharts) return state.charts;
    const C = window.TCCharts.LineChart;
    state.charts = {
      throughput: new C($("chart-throughput"), $("legend-throughput"), [{ label: "calls/s" }, { label: "polls/s" }],
        { windowSeconds: 120 }),
      latency: new C($("chart-latency"), $("legend-latency"), [{ label: "mean" }, { label: "p95" }],
        { unit: "ms", windowSeconds: 120 }),
      queue: new C($("chart-queue"), $("legend-queue"), [{ label: "waiting" }, { label: "running" }],
        { windowSeconds: 120 }),
    };
    return state.charts;
  }

  async function sampleMetrics() {
    let text;
    try {
      const r = await fetch("/metrics", { cache: "no-store" });
      text = await r.text();
    } catch (e) {
      return;
    }
    const prom = parseProm(text);
    const now = Date.now();
    const cur = {
      t: now,
      count: total(prom, LATENCY + "_count"),
      sum: total(prom, LATENCY + "_sum"),
      polls: total(prom, "commands_poll_cycles_total"),
      buckets: buckets(prom, LATENCY),
    };
    const prev = state.metricsPrev;
    state.metricsPrev = cur;
    const charts = ensureCharts();
    if (charts && prev) {
      const dt = Math.max(0.001, (cur.t - prev.t) / 1000);
      const dn = cur.count - prev.count;
      charts.throughput.push(now, [Math.max(0, dn / dt), Math.max(0, (cur.polls - prev.polls) / dt)]);
      charts.latency.push(now, [dn > 0 ? (cur.sum - prev.sum) / dn : null, quantile(prev.buckets, cur.buckets, 0.95)]);
      charts.queue.push(now, [total(prom, "commands_queue_length"), total(prom, "dispatcher_worker_pool_occupancy")]);
    }
    if (state.tab === "metrics") {
      const rows = COUNTERS.map(([name, meaning]) => el("tr", { "data-metric": name },
        el("td", {}, el("code", { text: name })),
        el("td", { class: "num", text: String(total(prom, name)) }),
        el("td", { class: "muted", text: meaning })));
      const last = total(prom, "commands_poll_last_successful_timestamp_seconds");
      rows.push(el("tr", { "data-metric": "commands_poll_last_successful_timestamp_seconds" },
        el("td", {}, el("code", { text: "commands_poll_last_successful_timestamp_seconds" })),
        el("td", { class: "num", text: last ? ago(new Date(last * 1000).toISOString()) : "never" }),
        el("td", { class: "muted", text: "last successful poll" })));
      $("counters-body").replaceChildren(...rows);
    }
  }

  // ---------------------------------------------------------------------- OAuth

  function oauthState(o) {
    if (!o.configured) return ["Not configured", "neutral", "oauth-not-configured"];
    if (o.pending) return ["Discovery pending", "warn", "pending"];
    if (o.optional || o.metadata_source === "not_advertised") return ["Not advertised", "neutral", "not_advertised"];
    if (o.error) return ["Discovery failed", "bad", "failed"];
    return ["Discovered", "ok", "discovered"];
  }

  function attemptsTable(title, head, rows) {
    return el("div", { class: "card wide table-wrap" }, el("h3", { text: title }),
      el("table", { class: "data" },
        el("thead", {}, el("tr", {}, ...head.map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c)))))));
  }

  async function refreshOAuth() {
    let o;
    try {
      o = await getJSON("/api/oauth");
    } catch (e) {
      return;
    }
    const root = $("oauth-content");
    const [label, st, key] = oauthState(o);
    const headline = el("div", { class: "big", id: "oauth-state", "data-state": st, "data-key": key, text: label });
    if (!o.configured) {
      root.replaceChildren(el("div", { class: "card wide", id: "oauth-not-configured" },
        el("h3", { text: "OAuth discovery" }), headline,
        el("p", { class: "note", text: "No OAuth discovery for this client: it runs for a Streamable HTTP MCP server "
          + "on the main channel. Its discovered URLs, the selected authorization server and every fetch "
          + "attempt appear here." })));
      return;
    }
    const meta = o.metadata || {};
    const body = meta.body || {};
    const summary = el("div", { class: "card" }, el("h3", { text: "OAuth discovery" }), headline,
      o.error ? el("div", { class: "reason", text: o.error }) : null,
      key === "not_advertised" ? el("p", { class: "note", text: "The MCP server publishes no protected resource "
        + "metadata, so clients call it without OAuth. That is fine for readiness." }) : null,
      el("dl", { class: "kv" },
        el("dt", { text: "Source" }), el("dd", { text: o.metadata_source || "—" }),
        el("dt", { text: "Metadata URL" }), el("dd", {}, el("code", { text: meta.url || "—" })),
        el("dt", { text: "Fetched" }), el("dd", { text: meta.fetched_at ? ago(meta.fetched_at) : "—" })));
    const server = el("div", { class: "card" }, el("h3", { text: "Authorization server" }),
      el("dl", { class: "kv" },
        el("dt", { text: "Selected" }), el("dd", {}, el("code", { text: o.selected_authorization_server || "—" })),
        el("dt", { text: "Advertised" }), el("dd", { text: String(o.authorization_server_count || 0) }),
        el("dt", { text: "Resource" }), el("dd", {}, el("code", { text: body.resource || "—" })),
        el("dt", { text: "Scopes" }), el("dd", { text: (body.scopes_supported || []).join(", ") || "—" }),
        el("dt", { text: "Rule" }), el("dd", { class: "muted", text: o.auth_server_metadata_mode || "" })));
    const cards = [summary, server];
    const attempts = meta.attempts || [];
    if (attempts.length) {
      cards.push(attemptsTable("Protected resource metadata", ["URL", "Source", "Status", "Result"],
        attempts.map((a) => [el("code", { text: a.url }), a.source || "", a.tried ? String(a.status_code || "—") : "not tried",
          a.selected ? pill("selected", "ok") : a.error ? pill(a.error, "bad") : ""])));
    }
    const asm = meta.auth_server_metadata;
    if (asm && (asm.attempts || []).length) {
      cards.push(attemptsTable("Authorization server metadata", ["URL", "Document", "Status", "Result"],
        asm.attempts.map((a) => [el("code", { text: a.url }), a.document || "", a.tried ? String(a.status_code || "—") : "not tried",
          a.selected ? pill("selected", "ok") : a.error ? pill(a.error, "bad") : a.warning ? pill(a.warning, "warn") : ""])));
    }
    root.replaceChildren(...cards);
  }

  // ---------------------------------------------------------------------- logs

  function setLevelBadge(level) {
    badge("badge-level", "neutral", level);
  }

  async function loadLevel() {
    try {
      const l = await getJSON("/api/log-level");
      const sel = $("level-select");
      if (!sel.options.length) {
        sel.replaceChildren(...l.supported_levels.map((v) => el("option", { value: v, text: v })));
      }
      sel.value = l.level;
      setLevelBadge(l.level);
    } catch (e) {
      /* the badge keeps its last value */
    }
  }

  async function applyLevel() {
    const level = $("level-select").value;
    const line = $("log-status");
    try {
      const r = await fetch("/api/log-level", {
        method: "PUT", cache: "no-store", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ level: level }),
      });
      if (!r.ok) throw new Error((await r.text()).trim() || "HTTP " + r.status);
      const body = await r.json();
      setLevelBadge(body.level);
      line.dataset.state = "ok";
      line.textContent = "Log level is now " + body.level + ".";
    } catch (e) {
      line.dataset.state = "bad";
      line.textContent = "Could not change the log level: " + e.message;
    }
  }

  function logRow(ev) {
    const attrs = Object.assign({}, ev.attrs || {});
    const comp = attrs.component || "";
    delete attrs.component;
    delete attrs.tunnel_id;
    delete attrs.client_instance_id;
    const attrNodes = [];
    for (const [k, v] of Object.entries(attrs)) {
      attrNodes.push(" ", el("b", { text: k + "=" }), typeof v === "string" ? v : JSON.stringify(v));
    }
    const row = el("div", { class: "log-row", "data-level": ev.level, "data-seq": ev.seq },
      el("span", { class: "t", title: ev.time, text: clock(ev.time) }),
      el("span", { class: "lvl", text: ev.level }),
      el("span", { class: "comp", title: comp, text: comp }),
      el("span", { class: "msg" }, ev.message, el("span", { class: "attrs" }, ...attrNodes)));
    row.hidden = !logVisible(row);
    return row;
  }

  function logVisible(row) {
    const min = LEVEL_RANK[$("log-filter-level").value] || 0;
    if ((LEVEL_RANK[row.dataset.level] || 0) < min) return false;
    const q = $("log-filter-text").value.trim().toLowerCase();
    return !q || row.textContent.toLowerCase().includes(q);
  }

  function appendLogs(events) {
    const view = $("log-view");
    const stick = view.scrollTop + view.clientHeight >= view.scrollHeight - 24;
    const frag = document.createDocumentFragment();
    for (const ev of events) {
      if (ev.seq <= state.logLastSeq) continue;
      state.logLastSeq = ev.seq;
      frag.append(logRow(ev));
      state.logRows++;
    }
    view.append(frag);
    while (state.logRows > MAX_LOG_ROWS && view.firstChild) {
      view.firstChild.remove();
      state.logRows--;
    }
    if (stick) view.scrollTop = view.scrollHeight;
  }

  function refilterLogs() {
    for (const row of $("log-view").children) row.hidden = !logVisible(row);
  }

  function updatePauseLabel() {
    $("log-pause").textContent = state.logPaused
      ? "Resume" + (state.logPending.length ? " (" + state.logPending.length + " new)" : "")
      : "Pause";
  }

  async function startLogs() {
    if (state.logsStarted) return;
    state.logsStarted = true;
    try {
      const recent = await getJSON("/api/logs?limit=500");
      appendLogs(recent.events || []);
    } catch (e) {
      $("log-status").textContent = "Could not load recent logs: " + e.message;
    }
    const es = new EventSource("/api/logs/stream?after=" + state.logLastSeq);
    es.addEventListener("log", (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch (e) { return; }
      if (state.logPaused) {
        state.logPending.push(ev);
        if (state.logPending.length > 5000) state.logPending.shift();
        updatePauseLabel();
      } else {
        appendLogs([ev]);
      }
    });
    es.addEventListener("open", () => { $("log-view").dataset.stream = "open"; });
    es.addEventListener("error", () => { $("log-view").dataset.stream = "reconnecting"; });
  }

  // ---------------------------------------------------------------------- Codex

  const CODEX_STATE = {
    installed: ["Installed and enabled", "ok"],
    installed_not_enabled: ["Installed, not enabled", "warn"],
    stale_config: ["Enabled in config.toml, files missing", "warn"],
    not_installed: ["Not installed", "neutral"],
    codex_not_detected: ["Codex not detected", "neutral"],
  };

  async function refreshCodex() {
    let c;
    try {
      c = await getJSON("/api/codex/plugin");
    } catch (e) {
      return;
    }
    const [label, st] = CODEX_STATE[c.state] || [c.state, "neutral"];
    const stale = (c.stale_plugin_config_entries || []).map((e) => e.key + " (" + e.reason + ")");
    const kv = [
      ["CODEX_HOME", c.codex_home],
      ["config.toml", c.config_exists ? "present" : "missing"],
      ["codex on PATH", c.codex_on_path ? "yes" : "no"],
      ["Plugin", c.plugin_installed ? c.plugin_key + " " + c.plugin_version : "not installed"],
      ["Plugin folder", c.plugin_dir || "—"],
      ["Enabled entries", (c.enabled_plugin_config_keys || []).join(", ") || "none"],
    ];
    if (c.plugin_installed && c.plugin_points_here !== undefined) {
      kv.push(["Starts this tunnel-client", c.plugin_points_here ? "yes" : "no (reinstall to point it here)"]);
    }
    if ((c.legacy_plugin_keys || []).length) kv.push(["Legacy plugins", c.legacy_plugin_keys.join(", ")]);
    if (stale.length) kv.push(["Stale entries", stale.join(", ")]);
    if (c.config_error) kv.push(["config.toml error", c.config_error]);
    const card = el("div", { class: "card wide", id: "codex-card", "data-state": c.state },
      el("h3", { text: "Codex plugin" }),
      el("div", { class: "big", "data-state": st === "neutral" ? "" : st, text: label }),
      el("dl", { class: "kv" }, ...kv.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, el("code", { text: v }))])));
    if (c.install_hint) {
      card.append(el("p", { class: "note" }, "Install it with ", el("code", { text: c.install_hint }),
        ": Codex can then set up and check this tunnel from a plain-language request."));
    }
    $("codex-content").replaceChildren(card);
  }

  // ---------------------------------------------------------------------- tabs

  const TABS = {
    overview: { refresh: refreshStatus, every: 0 },
    channels: { refresh: refreshStatus, every: 0 },
    traffic: { refresh: refreshTraffic, every: 2000 },
    metrics: { refresh: sampleMetrics, every: 0 },
    oauth: { refresh: refreshOAuth, every: 5000 },
    logs: { refresh: () => { loadLevel(); return startLogs(); }, every: 0 },
    codex: { refresh: refreshCodex, every: 10000 },
  };
  let tabTimer = null;

  function showTab(name) {
    if (!TABS[name]) name = "overview";
    state.tab = name;
    for (const a of document.querySelectorAll(".tabs a")) {
      a.setAttribute("aria-selected", a.dataset.tab === name ? "true" : "false");
    }
    for (const p of document.querySelectorAll("[data-panel]")) {
      p.classList.toggle("hidden", p.dataset.panel !== name);
    }
    if (tabTimer) clearInterval(tabTimer);
    tabTimer = null;
    const tab = TABS[name];
    if (tab.every) tabTimer = every(tab.every, tab.refresh);
    else tab.refresh();
    if (name === "metrics" && state.charts) {
      Object.values(state.charts).forEach((c) => c.draw());
    }
  }

  function init() {
    $("traffic-filter").addEventListener("input", (e) => { state.trafficFilter = e.target.value; refreshTraffic(); });
    $("log-filter-level").value = "DEBUG";
    $("log-filter-level").addEventListener("change", refilterLogs);
    $("log-filter-text").addEventListener("input", refilterLogs);
    $("log-pause").addEventListener("click", () => {
      state.logPaused = !state.logPaused;
      if (!state.logPaused) {
        const pending = state.logPending;
        state.logPending = [];
        appendLogs(pending);
      }
      updatePauseLabel();
    });
    $("log-clear").addEventListener("click", () => { $("log-view").replaceChildren(); state.logRows = 0; });
    $("level-apply").addEventListener("click", applyLevel);
    $("export-minutes").addEventListener("change", (e) => {
      $("export-link").href = "/api/logs/export?minutes=" + encodeURIComponent(e.target.value);
    });
    window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
    window.addEventListener("resize", () => {
      if (state.charts) Object.values(state.charts).forEach((c) => c.draw());
    });

    every(5000, refreshBadges);
    every(5000, refreshStatus); // header, overview and channels
    every(2000, sampleMetrics); // charts keep their history whichever tab is open
    loadLevel();
    showTab(location.hash.slice(1) || "overview");
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", init);
})();
