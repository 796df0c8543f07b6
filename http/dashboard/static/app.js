// Granary dashboard. On load every panel is fetched at once (no panel
// waits for another, nor for the live stream), then polled every 2 s;
// the live stream only adds events. The token comes from the URL fragment
// (#token=…, never sent to the server), the session, or the sign-in form.
// A failing panel says so in the status line and leaves the others alone.
"use strict";

const state = { token: "", loadedAt: Date.now(), recent: [], saga: null, account: null, rebuilding: new Map(), rebuilt: new Map() };
const $ = (id) => document.getElementById(id);

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

function loadToken() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("granary.token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  state.token = sessionStorage.getItem("granary.token") || "";
}

async function api(path, init) {
  const opts = Object.assign({}, init || {});
  opts.headers = Object.assign({ Authorization: "Bearer " + state.token }, opts.headers || {});
  const res = await fetch(path, opts);
  if (res.status === 401) throw new Error("signed out");
  if (!res.ok) {
    let detail = "";
    try { detail = (await res.json()).detail || ""; } catch (e) { /* not problem+json */ }
    throw new Error(path.split("?")[0] + ": " + res.status + (detail ? " " + detail : ""));
  }
  return res.json();
}

// optional answers {data} or {error} instead of throwing, except for a
// lost session, which the status line handles.
async function optional(path) {
  try {
    return { data: await api(path) };
  } catch (e) {
    if (e.message === "signed out") throw e;
    return { data: null, error: e.message };
  }
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
const cell = (text, cls) => el("td", text, cls);

function row(cells, cls) {
  const tr = el("tr", undefined, cls);
  tr.append(...cells);
  return tr;
}

function fill(id, rows) {
  $(id).querySelector("tbody").replaceChildren(...rows);
}

function emptyRow(id, text) {
  const cols = $(id).querySelectorAll("thead th").length;
  const td = cell(text, "muted");
  td.colSpan = cols;
  fill(id, [row([td])]);
}

function age(ts) {
  const t = Date.parse(ts);
  if (!ts || Number.isNaN(t)) return "—";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 120 ? s + "s ago" : s < 7200 ? Math.round(s / 60) + "m ago" : Math.round(s / 3600) + "h ago";
}

const money = (n) => (Number(n) / 100).toFixed(2);
const statusClass = (s) => (s === "completed" || s === "UP" || s === "closed" || String(s).startsWith("alive") ? "ok"
  : s === "compensated" || s === "compensating" || s === "suspected" || s === "half-open" ? "warn"
  : s === "dead" || s === "DOWN" || s === "open" || s === "failed" ? "bad" : "");

// ---- members and charts (one fetch of /api/v1/dashboard/metrics feeds both)

async function loadMembers(metrics) {
  const { members, self } = await api("/api/v1/cluster/members");
  const grains = (metrics && metrics.members) || {};
  const alive = members.filter((m) => m.status !== "dead").length;
  $("members-note").textContent = alive + " listed" + (members.length > alive ? ", " + (members.length - alive) + " departed" : "");
  fill("members", members.map((m) => {
    const g = grains[m.id] || {};
    const counts = Object.entries(g.grains || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
    const total = g.grains ? Object.values(g.grains).reduce((a, n) => a + Number(n), 0) : null;
    const kinds = el("td", undefined, "kinds");
    if (counts.length) {
      counts.forEach(([k, n], i) => {
        if (i) kinds.append(", ");
        kinds.append(k + " ", el("b", n));
      });
    } else {
      kinds.textContent = m.status === "dead" ? "left " + age(g.left_at) : (m.kinds || []).length + " kinds, no grain active";
    }
    const st = el("td");
    st.append(el("span", m.status, "pill " + statusClass(m.status)));
    return row([
      cell(m.id + (m.id === self ? " (this gateway)" : "")), st, cell(m.address),
      cell(total === null ? "—" : total), kinds,
    ], m.status === "dead" ? "dead" : "");
  }));
}

function fmtRate(v) { return v === null || v === undefined ? "—" : v >= 10 ? v.toFixed(0) : v.toFixed(1); }
function fmtSecs(v) { return v === null || v === undefined ? "—" : v < 1 ? (v * 1000).toFixed(v < 0.01 ? 1 : 0) + " ms" : v.toFixed(2) + " s"; }

// chart draws values (null = no data) as an area under a line; the
// newest point is on the right edge, the window is the last 10 minutes.
function chart(id, values, fmt) {
  const svg = $(id);
  const ns = "http://www.w3.org/2000/svg";
  // At most the 10 minutes kept; a shorter history is stretched over at
  // least one minute, so a page opened just after a start still reads.
  const W = 300, H = 80;
  const vals = values.slice(-300);
  const n = Math.max(vals.length, 30);
  const known = vals.filter((v) => v !== null && v !== undefined);
  const top = Math.max(known.length ? Math.max(...known) : 0, 1e-9) * 1.15;
  const x = (i) => W - (vals.length - 1 - i) * (W / (n - 1));
  const y = (v) => H - (v / top) * (H - 12);
  const kids = [];
  for (const f of [0.25, 0.5, 0.75]) {
    const l = document.createElementNS(ns, "line");
    l.setAttribute("class", "grid");
    l.setAttribute("x1", 0); l.setAttribute("x2", W); l.setAttribute("y1", H * f); l.setAttribute("y2", H * f);
    kids.push(l);
  }
  const pts = [];
  vals.forEach((v, i) => { if (v !== null && v !== undefined) pts.push([x(i), y(v)]); });
  if (pts.length > 1) {
    const area = document.createElementNS(ns, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", [[pts[0][0], H], ...pts, [pts[pts.length - 1][0], H]].map((p) => p.join(",")).join(" "));
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("class", "line");
    line.setAttribute("points", pts.map((p) => p.join(",")).join(" "));
    kids.push(area, line);
  }
  if (pts.length) {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("class", "dot");
    dot.setAttribute("cx", pts[pts.length - 1][0] - 2); dot.setAttribute("cy", pts[pts.length - 1][1]); dot.setAttribute("r", 2.5);
    kids.push(dot);
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 3); label.setAttribute("y", 10);
  label.textContent = known.length ? "max " + fmt(Math.max(...known)) : "no data yet";
  kids.push(label);
  svg.replaceChildren(...kids);
  svg.dataset.points = String(known.length);
}

function drawCharts(m) {
  const s = m.samples || [];
  const last = s.length ? s[s.length - 1] : {};
  chart("chart-rps", s.map((x) => x.requests_per_second), fmtRate);
  chart("chart-p99", s.map((x) => x.p99_seconds), fmtSecs);
  chart("chart-app", s.map((x) => x.journal_appends_per_second), fmtRate);
  $("v-rps").textContent = fmtRate(last.requests_per_second) + "/s";
  $("v-p99").textContent = fmtSecs(last.p99_seconds);
  $("v-app").textContent = m.journal_measured ? fmtRate(last.journal_appends_per_second) + "/s" : "not measured here";
  $("charts-note").textContent = s.length + " samples every " + m.interval_seconds + " s";
}

// ---- sagas and their steps

async function loadSagas() {
  const { sagas } = await api("/api/v1/sagas?limit=15");
  if (!sagas.length) return emptyRow("sagas", "no saga yet");
  fill("sagas", sagas.map((s) => {
    const tr = row([
      cell(s.kind), cell(s.id), cell(s.status, statusClass(s.status)),
      cell(s.failed_step || "—"), cell(new Date(s.updated_at).toLocaleTimeString()),
    ], "click" + (state.saga && state.saga.id === s.id ? " selected" : ""));
    tr.dataset.sagaId = s.id;
    tr.addEventListener("click", () => showSaga(s.kind, s.id));
    return tr;
  }));
}

async function showSaga(kind, id) {
  state.saga = { kind, id };
  for (const tr of $("sagas").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.sagaId === id);
  const path = (kind === "order" ? "/api/v1/orders/" : "/api/v1/transfers/") + encodeURIComponent(id);
  $("saga-detail").hidden = false;
  try {
    const s = await api(path);
    const what = kind === "order" ? "order " + s.product_id + " × " + s.quantity + ", " + money(s.amount)
      : "transfer " + s.from_account + " → " + s.to_account + ", " + money(s.amount);
    $("saga-title").textContent = what + " — " + s.status + (s.error ? " (" + s.error + ")" : "");
    fill("saga-steps", (s.steps || []).map((st, i) => row([cell(i + 1), cell(st.name), cell(st.status, statusClass(st.status)), cell(st.error || "—")])));
  } catch (e) {
    $("saga-title").textContent = id + ": " + e.message;
    fill("saga-steps", []);
  }
}

// ---- account lookup and time travel

function describe(dl, a) {
  const rows = [["number", a.account_number], ["owner", a.owner_name + " (" + a.owner + ")"], ["balance", money(a.balance)],
    ["version", a.version], ["closed", a.closed ? "yes" : "no"]];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
}

function eventText(d) {
  if (!d || typeof d !== "object") return "";
  return Object.entries(d).filter(([, v]) => v !== "" && v !== null).map(([k, v]) => k + " " + (k.includes("amount") || k.includes("balance") ? money(v) : v)).join(" · ");
}

async function lookup(id) {
  id = id.trim();
  if (!id) return;
  $("account-note").textContent = "looking up " + id + "…";
  try {
    const [acc, page] = await Promise.all([
      api("/api/v1/accounts/" + encodeURIComponent(id)),
      api("/api/v1/accounts/" + encodeURIComponent(id) + "/events?limit=1000"),
    ]);
    state.account = { id, version: acc.version };
    $("account").hidden = false;
    $("account-note").textContent = "";
    $("now-version").textContent = "v" + acc.version;
    describe($("account-now"), acc);
    fill("account-events", page.events.map((ev) => {
      const tr = row([cell(ev.version), cell(ev.type), cell(eventText(ev.data)), cell(new Date(ev.occurred_at).toLocaleTimeString([], { hour12: false }))], "click");
      tr.dataset.version = ev.version;
      tr.addEventListener("click", () => travel(ev.version));
      return tr;
    }));
    $("at-version").max = acc.version;
    await travel(Math.max(1, acc.version - 1));
  } catch (e) {
    $("account").hidden = true;
    $("account-note").textContent = e.message;
  }
}

async function travel(version) {
  if (!state.account) return;
  $("at-version").value = version;
  for (const tr of $("account-events").tBodies[0].rows) tr.classList.toggle("selected", Number(tr.dataset.version) === version);
  try {
    const a = await api("/api/v1/accounts/" + encodeURIComponent(state.account.id) + "?at_version=" + version);
    $("at-note").textContent = "";
    describe($("account-at"), a);
    $("account-at").dataset.version = String(a.version);
  } catch (e) {
    $("at-note").textContent = e.message;
    $("account-at").replaceChildren();
  }
}

// ---- projections and rebuilds

async function loadProjections() {
  const { projections } = await api("/api/v1/projections");
  fill("projections", projections.map((p) => {
    const act = el("td");
    if (p.rebuilding) {
      const bar = el("progress");
      bar.max = 1;
      bar.value = Number(p.rebuild_progress) || 0;
      act.append(bar, " " + Math.floor(100 * (Number(p.rebuild_progress) || 0)) + "%");
      state.rebuilding.set(p.name, p.rebuild_generation);
    } else {
      const gen = state.rebuilding.get(p.name);
      if (gen !== undefined && p.generation >= gen) {
        state.rebuilding.delete(p.name);
        state.rebuilt.set(p.name, Date.now());
      }
      const b = el("button", "Rebuild");
      b.addEventListener("click", () => rebuild(p.name, b));
      act.append(b);
      if (state.rebuilt.has(p.name)) act.append(" ", el("span", "rebuilt (generation " + p.generation + ")", "ok rebuilt"));
    }
    const tr = row([cell(p.name), cell(p.position + " / " + p.head), cell(p.lag, p.lag > 100 ? "warn" : "ok"), act]);
    tr.dataset.projection = p.name;
    return tr;
  }));
  // While a rebuild runs, follow it closer than the 2 s poll.
  if (state.rebuilding.size && !state.rebuildTimer) {
    state.rebuildTimer = setTimeout(() => { state.rebuildTimer = null; guard("projections", loadProjections); }, 300);
  }
}

async function rebuild(name, button) {
  button.disabled = true;
  try {
    const r = await api("/api/v1/projections/" + encodeURIComponent(name) + "/rebuild", { method: "POST" });
    state.rebuilt.delete(name);
    state.rebuilding.set(name, r.rebuild_generation);
  } catch (e) {
    setStatus("rebuild " + name + ": " + e.message, "warn");
  }
  await guard("projections", loadProjections);
}

// ---- services and the registry

function breakersOf(balanced, name) {
  if (!balanced) return null;
  const m = new Map();
  const svc = (balanced.services || []).find((s) => s.name === name);
  for (const i of (svc && svc.instances) || []) m.set(String(i.id).split("/").pop(), String(i.breaker || svc.breaker || ""));
  return m;
}

const maxRegistryServices = 50; // one instances fetch each, every 2 s

function registryBlock(svc, listing, breakers) {
  const div = el("div", undefined, "service");
  const up = Number(svc.instances_up) || 0, total = Number(svc.instances_total) || 0;
  const h = el("h3", svc.name + (svc.builtin ? " (built in) " : " "));
  h.append(el("span", up + "/" + total + " up", "pill " + (up === 0 ? "bad" : up < total ? "warn" : "ok")));
  div.append(h);
  if (!listing.data) {
    div.append(el("p", "instances unavailable (" + listing.error + ")", "muted"));
    return div;
  }
  const table = el("table");
  const head = el("tr");
  for (const t of ["instance", "address", "health", "last heartbeat", "in flight", "served", "breaker"]) head.append(el("th", t));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  table.tBodies[0].append(...(listing.data.instances || []).map((i) => {
    const breaker = breakers ? breakers.get(String(i.instance_id)) || "" : "";
    return row([
      cell(i.instance_id), cell(i.host + ":" + i.port), cell(i.status, statusClass(i.status)),
      cell(i.builtin ? "built in" : age(i.last_heartbeat)), cell(i.in_flight ?? "—"), cell(i.served ?? "—"),
      cell(breaker || "—", statusClass(breaker)),
    ]);
  }));
  div.append(table);
  return div;
}

async function loadServices(balanced) {
  if (!balanced.data) throw new Error(balanced.error);
  fill("services", balanced.data.services.map((s) => row([
    cell(s.name), cell(s.strategy), cell(s.breaker, statusClass(s.breaker)),
    cell((s.instances || []).map((i) => String(i.id).split("/").pop() + (i.member_id ? "@" + String(i.member_id).slice(0, 6) : "") + " " + i.in_flight + "/" + i.served).join("  ") || "—"),
  ])));
}

async function loadRegistry(balanced) {
  const [reg, routes] = await Promise.all([optional("/api/v1/registry"), optional("/api/v1/routes")]);
  const box = $("registry");
  if (!reg.data) {
    $("registry-note").textContent = "unavailable (" + reg.error + ")";
    box.replaceChildren();
  } else {
    // Registered services first: the built-in ones are always there.
    const all = (reg.data.services || []).slice().sort((a, b) => Number(a.builtin) - Number(b.builtin));
    const shown = all.slice(0, maxRegistryServices);
    $("registry-note").textContent = all.length > shown.length ? "first " + shown.length + " of " + all.length : all.length + " services";
    const listings = await Promise.all(shown.map((s) => optional("/api/v1/registry/" + encodeURIComponent(s.name) + "/instances")));
    box.replaceChildren(...(shown.length
      ? shown.map((s, k) => registryBlock(s, listings[k], breakersOf(balanced.data, s.name)))
      : [el("p", "no service registered", "muted")]));
  }
  if (!routes.data) {
    $("routes-note").textContent = "unavailable (" + routes.error + ")";
    return emptyRow("routes", "—");
  }
  $("routes-note").textContent = "";
  const rs = routes.data.routes || [];
  if (!rs.length) return emptyRow("routes", "no route: registered services are reached through routes");
  fill("routes", rs.map((r) => row([
    cell(r.name), cell(r.path_prefix), cell(r.service), cell(r.rewrite_prefix || "—"),
    cell(Array.isArray(r.methods) && r.methods.length ? r.methods.join(", ") : "any"), cell(r.strategy),
    cell(r.timeout_ms + " ms"), cell(r.auth, r.auth === "public" ? "warn" : ""),
  ])));
}

// ---- refresh: every panel at once

const failures = new Map();

async function guard(name, load) {
  try {
    await load();
    failures.delete(name);
  } catch (e) {
    failures.set(name, e.message);
  }
}

let refreshing = null;
function refresh() {
  if (refreshing) return refreshing; // a slow gateway must not pile polls up
  refreshing = (async () => {
    if (document.hidden && state.painted) return;
    const metrics = optional("/api/v1/dashboard/metrics");
    const balanced = optional("/api/v1/services");
    await Promise.all([
      guard("members", async () => loadMembers((await metrics).data)),
      guard("charts", async () => { const m = await metrics; if (!m.data) throw new Error(m.error); drawCharts(m.data); }),
      guard("sagas", loadSagas),
      guard("projections", loadProjections),
      guard("services", async () => loadServices(await balanced)),
      guard("registry", async () => loadRegistry(await balanced)),
      state.saga ? guard("saga", () => showSaga(state.saga.kind, state.saga.id)) : null,
    ]);
    state.painted = true;
    const msgs = [...failures.entries()].map(([k, v]) => k + ": " + v);
    if (msgs.some((m) => m.includes("signed out"))) {
      showLogin(true);
      setStatus("sign in as an admin", "warn");
    } else if (msgs.length) {
      setStatus(msgs.join("; "), "warn");
    } else {
      setStatus("live · " + new Date().toLocaleTimeString(), "ok");
    }
  })().finally(() => { refreshing = null; });
  return refreshing;
}

// ---- live events

// addEvent lists an event; the rate counts only events that happened
// since the page loaded, over the last minute, so the backfill the stream
// starts with does not inflate it.
function addEvent(type, id, data, occurredAt) {
  const li = el("li");
  li.append(el("span", type, "type"), " ", id ? "#" + id + " " : "", data);
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
  const at = Date.parse(occurredAt);
  if (!Number.isNaN(at) && at >= state.loadedAt) state.recent.push(Date.now());
  showRate();
}

function showRate() {
  const now = Date.now();
  while (state.recent.length && state.recent[0] < now - 60000) state.recent.shift();
  const secs = Math.max(1, Math.min(60, (now - state.loadedAt) / 1000));
  $("rate").textContent = state.recent.length + " new in the last " + Math.round(secs) + " s, " + (state.recent.length / secs).toFixed(1) + "/s";
}

function summarize(data) {
  try {
    const d = JSON.parse(data);
    const parts = [];
    if (d.stream) parts.push(d.stream);
    if (d.data && d.data.amount !== undefined) parts.push("amount " + d.data.amount);
    if (d.members) parts.push(d.members.length + " members");
    return { text: parts.join(" · "), at: d.occurred_at };
  } catch (e) {
    return { text: data.slice(0, 120), at: "" };
  }
}

// follow reads the admin stream with fetch (EventSource cannot send the
// Authorization header) and parses Server-Sent Events by hand; it resumes
// from the last id after a disconnect.
async function follow() {
  let last = "";
  for (;;) {
    try {
      const headers = { Authorization: "Bearer " + state.token, Accept: "text/event-stream" };
      if (last) headers["Last-Event-ID"] = last;
      const res = await fetch("/api/v1/stream", { headers });
      if (!res.ok || !res.body) throw new Error("stream: " + res.status);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const msg = { event: "message", id: "", data: "" };
          for (const line of block.split("\n")) {
            const i = line.indexOf(":");
            if (i <= 0) continue;
            const k = line.slice(0, i), v = line.slice(i + 1).replace(/^ /, "");
            if (k === "event") msg.event = v;
            else if (k === "id") msg.id = v;
            else if (k === "data") msg.data += v;
          }
          if (msg.id) last = msg.id;
          if (msg.event === "topology") refresh();
          const s = summarize(msg.data);
          addEvent(msg.event, msg.id, s.text, msg.event === "topology" ? new Date().toISOString() : s.at);
        }
      }
    } catch (e) {
      failures.set("stream", e.message + " (reconnecting)");
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---- sign-in and start

function showLogin(show) {
  $("login").hidden = !show;
  $("logout").hidden = show;
}

$("login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await fetch("/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: $("username").value, password: $("password").value }),
  });
  if (!res.ok) {
    setStatus("sign-in failed", "bad");
    return;
  }
  state.token = (await res.json()).access_token;
  sessionStorage.setItem("granary.token", state.token);
  showLogin(false);
  start();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem("granary.token");
  state.token = "";
  showLogin(true);
});

$("lookup").addEventListener("submit", (ev) => {
  ev.preventDefault();
  lookup($("account-id").value);
});

$("at-version").addEventListener("change", () => {
  const v = Math.floor(Number($("at-version").value));
  if (state.account && v >= 1 && v <= state.account.version) travel(v);
});

let started = false;
function start() {
  refresh();
  if (!started) {
    started = true;
    setInterval(refresh, 2000);
    setInterval(showRate, 5000);
    follow();
  }
}

loadToken();
if (state.token) {
  showLogin(false);
  start();
} else {
  showLogin(true);
  setStatus("sign in as an admin", "warn");
}
