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

function fill(id, rows) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
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
      cell(s.instances.map((i) => i.id.split("/").pop() + "@" + i.member_id.slice(0, 6) + " " + i.in_flight + "/" + i.served).join("  ")),
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
