// Granary dashboard: polls the admin API every 2 s and follows the live
// stream. The token comes from the URL fragment (#token=…, never sent to
// the server), the session, or the sign-in form. Problems are shown in the
// status line, not thrown: a broken panel must not break the others.
"use strict";

const state = { token: "", events: 0, since: Date.now() };
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

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  if (res.status === 401) {
    throw new Error("signed out");
  }
  if (!res.ok) {
    throw new Error(path + ": " + res.status);
  }
  return res.json();
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function rowsOf(rows) {
  return rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  });
}

function fill(id, rows) {
  $(id).querySelector("tbody").replaceChildren(...rowsOf(rows));
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// optional fetches an endpoint that may not exist on this gateway yet
// (the registry is newer than the dashboard): it answers null instead of
// throwing, except for a lost session, which the status line handles.
async function optional(path) {
  try {
    return { data: await api(path) };
  } catch (e) {
    if (e.message === "signed out") throw e;
    return { data: null, error: e.message };
  }
}

function age(ts) {
  const t = Date.parse(ts);
  if (!ts || Number.isNaN(t)) return "—";
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 120 ? s + "s ago" : Math.round(s / 60) + "m ago";
}

// breakersOf picks one service's per-instance breaker states out of
// GET /api/v1/services; an instance without its own state shows the
// service's.
function breakersOf(balanced, name) {
  if (!balanced) return null;
  const m = new Map();
  const svc = (balanced.services || []).find((s) => s.name === name);
  for (const i of (svc && svc.instances) || []) {
    m.set(String(i.id).split("/").pop(), String(i.breaker || svc.breaker || ""));
  }
  return m;
}

const breakerClass = (b) => (b === "closed" ? "ok" : b === "open" ? "bad" : b ? "warn" : "muted");
const maxRegistryServices = 50; // one instances fetch each, every 2 s

// registryBlock renders one registered service: a heading with up/total
// and its instances. breakers maps instance id to the gateway's breaker
// state, or is null when the gateway does not say.
function registryBlock(svc, listing, breakers) {
  const div = el("div", undefined, "service");
  const up = Number(svc.instances_up) || 0, total = Number(svc.instances_total) || 0;
  const h = el("h3", String(svc.name) + " ");
  h.append(el("span", up + "/" + total + " up", up === 0 ? "bad" : up < total ? "warn" : "ok"));
  div.append(h);
  if (!listing.data) {
    div.append(el("p", "instances unavailable (" + listing.error + ")", "muted"));
    return div;
  }
  const table = el("table");
  const head = el("tr");
  for (const t of ["instance", "address", "status", "last heartbeat", "in flight", "served", "breaker"]) head.append(el("th", t));
  table.append(el("thead"), el("tbody"));
  table.tHead.append(head);
  const rows = (listing.data.instances || []).map((i) => {
    const breaker = breakers ? breakers.get(String(i.instance_id)) || "" : "";
    return [
      cell(String(i.instance_id)), cell(String(i.host) + ":" + String(i.port)),
      cell(String(i.status), i.status === "UP" ? "ok" : "bad"), cell(age(i.last_heartbeat)),
      cell(String(i.in_flight ?? "—")), cell(String(i.served ?? "—")),
      cell(breaker || (breakers ? "—" : "unavailable"), breakerClass(breaker)),
    ];
  });
  table.tBodies[0].append(...rowsOf(rows));
  div.append(table);
  return div;
}

const panels = {
  async members() {
    const { members } = await api("/api/v1/cluster/members");
    fill("members", members.map((m) => [cell(m.id), cell(m.address), cell(m.kinds.slice().sort().join(", ")), cell(m.status, "ok")]));
  },
  async services() {
    const { services } = await api("/api/v1/services");
    fill("services", services.map((s) => [
      cell(s.name), cell(s.strategy), cell(s.breaker, s.breaker === "closed" ? "ok" : s.breaker === "open" ? "bad" : "warn"),
      cell((s.instances || []).map((i) => String(i.id).split("/").pop() + (i.member_id ? "@" + String(i.member_id).slice(0, 6) : "") + " " + i.in_flight + "/" + i.served).join("  ")),
    ]));
  },
  async registry() {
    // Polling a hidden tab only costs the gateway: skip until it is seen.
    if (document.hidden) return;
    const [reg, balanced, routes] = await Promise.all([
      optional("/api/v1/registry"), optional("/api/v1/services"), optional("/api/v1/routes"),
    ]);
    const box = $("registry");
    if (!reg.data) {
      $("registry-note").textContent = "unavailable (" + reg.error + ")";
      box.replaceChildren();
    } else {
      const all = reg.data.services || [];
      const shown = all.slice(0, maxRegistryServices);
      $("registry-note").textContent = all.length > shown.length ? "first " + shown.length + " of " + all.length : "";
      const listings = await Promise.all(shown.map((s) => optional("/api/v1/registry/" + encodeURIComponent(s.name) + "/instances")));
      box.replaceChildren(...(shown.length
        ? shown.map((s, k) => registryBlock(s, listings[k], breakersOf(balanced.data, s.name)))
        : [el("p", "no service registered", "muted")]));
    }
    if (!routes.data) {
      $("routes-note").textContent = "unavailable (" + routes.error + ")";
      fill("routes", []);
      return;
    }
    $("routes-note").textContent = "";
    fill("routes", (routes.data.routes || []).map((r) => [
      cell(String(r.name)), cell(String(r.path_prefix)), cell(String(r.service)), cell(r.rewrite_prefix ? String(r.rewrite_prefix) : "—"),
      cell(Array.isArray(r.methods) && r.methods.length ? r.methods.join(", ") : "any"), cell(String(r.strategy)),
      cell(r.timeout_ms + " ms"), cell(String(r.auth), r.auth === "public" ? "warn" : ""),
    ]));
  },
  async projections() {
    const { projections } = await api("/api/v1/projections");
    fill("projections", projections.map((p) => [
      cell(p.rebuilding ? p.name + " (rebuilding " + Math.floor(100 * p.rebuild_progress) + "%)" : p.name, p.rebuilding ? "warn" : ""),
      cell(String(p.position)), cell(String(p.head)), cell(String(p.lag), p.lag > 100 ? "warn" : "ok"),
    ]));
  },
  async sagas() {
    const { sagas } = await api("/api/v1/sagas?limit=15");
    fill("sagas", sagas.map((s) => [
      cell(s.kind), cell(s.id), cell(s.status, s.status === "completed" ? "ok" : s.status === "compensated" ? "warn" : ""),
      cell(s.failed_step || ""), cell(new Date(s.updated_at).toLocaleTimeString()),
    ]));
  },
};

async function refresh() {
  const failures = [];
  for (const [name, load] of Object.entries(panels)) {
    try {
      await load();
    } catch (e) {
      failures.push(name + ": " + e.message);
    }
  }
  if (failures.some((f) => f.includes("signed out"))) {
    showLogin(true);
    setStatus("sign in as an admin", "warn");
  } else if (failures.length) {
    setStatus(failures.join("; "), "warn");
  } else {
    setStatus("live · " + new Date().toLocaleTimeString(), "ok");
  }
}

function addEvent(type, id, data) {
  const li = document.createElement("li");
  const t = document.createElement("span");
  t.className = "type";
  t.textContent = type;
  li.append(t, " ", id ? "#" + id + " " : "", data);
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
  state.events++;
  const secs = Math.max(1, (Date.now() - state.since) / 1000);
  $("rate").textContent = state.events + " events, " + (state.events / secs).toFixed(1) + "/s";
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
          addEvent(msg.event, msg.id, summarize(msg.data));
        }
      }
    } catch (e) {
      setStatus("stream: " + e.message + " (reconnecting)", "warn");
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function summarize(data) {
  try {
    const d = JSON.parse(data);
    const parts = [];
    if (d.stream) parts.push(d.stream);
    if (d.data && d.data.amount !== undefined) parts.push("amount " + d.data.amount);
    if (d.members) parts.push(d.members.length + " members");
    return parts.join(" · ");
  } catch (e) {
    return data.slice(0, 120);
  }
}

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

let started = false;
function start() {
  refresh();
  if (!started) {
    started = true;
    setInterval(refresh, 2000);
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
