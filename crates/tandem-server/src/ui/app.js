// The dashboard: signs in once (the server answers with an HttpOnly session cookie), then polls
// this server's API twice a second and redraws. Everything from the network goes in as text,
// never as markup.
"use strict";

const POLL_MS = 500;
const MAX_EVENTS = 200;
let lastEventId = 0;
let signedIn = false;

const $ = (id) => document.getElementById(id);

function ago(ms) {
  if (ms === null || ms === undefined) return "-";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  return s < 90 ? `${s.toFixed(1)}s ago` : `${Math.round(s / 60)}m ago`;
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "-";
}

function text(value) {
  return value === null || value === undefined ? "-" : String(value);
}

// A table from a header row and rows of cells; `mark(row)` names a class for a row.
function fill(table, headers, rows, mark) {
  const head = document.createElement("tr");
  for (const h of headers) {
    const th = document.createElement("th");
    th.textContent = h;
    head.appendChild(th);
  }
  const body = [head];
  rows.forEach((cells, i) => {
    const tr = document.createElement("tr");
    const cls = mark ? mark(i) : "";
    if (cls) tr.className = cls;
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = text(c);
      tr.appendChild(td);
    }
    body.push(tr);
  });
  table.replaceChildren(...body);
}

async function get(path) {
  const reply = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  if (reply.status === 401) throw new Error("unauthorized");
  if (!reply.ok) throw new Error(`${path}: HTTP ${reply.status}`);
  return reply.json();
}

function showSignIn(message) {
  signedIn = false;
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

function showBoard() {
  signedIn = true;
  $("sign-in").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
}

function drawServers(cluster) {
  const active = cluster.active_node;
  const since = activeSince(active && active.id);
  $("active-line").textContent = active
    ? `Active: node ${active.id} (${active.api_addr})${since ? `, since ${time(since)}` : ""}, term ${cluster.term}`
    : `No active node (term ${cluster.term}): an election is under way or there is no quorum`;
  const members = cluster.members || [];
  fill(
    $("servers"),
    ["ID", "API", "ROLE", "STANDING", "APPLIED", "LAG", "LAST CONTACT", "VOTER"],
    members.map((m) => {
      const self = m.is_self;
      const role = m.is_active ? "ACTIVE" : "standby";
      const applied = self ? cluster.applied_index : m.matched_index;
      const lag =
        m.matched_index !== null && m.matched_index !== undefined && cluster.last_log_index !== null
          ? Math.max(0, cluster.last_log_index - m.matched_index)
          : null;
      return [
        m.id + (self ? " (this server)" : ""),
        m.api_addr,
        role,
        self ? cluster.standing : "-",
        applied,
        lag,
        self ? "-" : m.last_contact_ms === null ? "-" : `${m.last_contact_ms}ms ago`,
        m.voter ? "yes" : "learner",
      ];
    }),
    (i) => (members[i].is_active ? "active" : ""),
  );
  $("servers").dataset.active = active ? String(active.id) : "";
}

function drawAgents(list) {
  const agents = list.agents || [];
  fill(
    $("agents"),
    ["NAME", "POOL", "STATE", "ADDRESS", "LOAD", "CHECKS", "LAST HEARTBEAT", "IN STATE SINCE"],
    agents.map((a) => [
      a.name,
      a.pool,
      a.state.toUpperCase(),
      a.address,
      a.load === null ? "-" : a.load.toFixed(2),
      (a.checks || []).map((c) => `${c.name}: ${c.status}`).join(", ") || "-",
      ago(a.last_heartbeat_ms),
      time(a.state_since_ms),
    ]),
    (i) => (agents[i].state === "passing" ? "" : "problem"),
  );
}

function drawMesh(view) {
  const rows = [];
  for (const agent of view.agents || []) {
    for (const p of agent.peers || []) {
      rows.push([agent.name, "peer", p.id || p.address, p.state, p.rtt_ms === null ? "-" : `${p.rtt_ms.toFixed(1)} ms`]);
    }
    for (const r of agent.routes || []) {
      rows.push([agent.name, "route", `${r.dest} via ${r.next_hop} (${(r.path || []).join(">")})`, r.state, `metric ${r.metric}, weight ${r.weight}`]);
    }
  }
  fill($("mesh"), ["AGENT", "KIND", "WHAT", "STATE", "DETAIL"], rows);
}

function drawKeys(keys) {
  const list = keys.keys || [];
  fill(
    $("keys"),
    ["KID", "SERVER", "PUBLISHED", "RETIRED", "REMOVED AT", "SIGNING HERE"],
    list.map((k) => [
      k.kid,
      k.node_id,
      time(k.published_at_ms),
      time(k.retired_at_ms),
      time(k.remove_at_ms),
      k.kid === keys.signing_kid ? "yes" : "",
    ]),
  );
}

const seenActive = [];

// When the current active node took the role, if this page saw the event.
function activeSince(id) {
  const last = seenActive[seenActive.length - 1];
  return last && last.id === id ? last.at : null;
}

function drawEvents(feed) {
  const list = $("events");
  for (const e of feed.events || []) {
    if (e.kind === "active_changed") seenActive.push({ id: e.detail.active, at: e.at_ms });
    const li = document.createElement("li");
    li.textContent = `${time(e.at_ms)} node ${e.node_id} ${e.kind} ${JSON.stringify(e.detail)}`;
    li.dataset.kind = e.kind;
    list.prepend(li);
  }
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  lastEventId = Math.max(lastEventId, feed.last_id || 0);
}

async function refresh() {
  try {
    const events = await get(`/v1/events?since=${lastEventId}`);
    drawEvents(events);
    const [cluster, agents, mesh, keys] = await Promise.all([
      get("/v1/cluster"),
      get("/v1/agents").catch(() => ({ agents: [] })),
      get("/v1/mesh").catch(() => ({ agents: [] })),
      get("/v1/keys"),
    ]);
    if (!signedIn) showBoard();
    drawServers(cluster);
    drawAgents(agents);
    drawMesh(mesh);
    drawKeys(keys);
    $("status").textContent = `updated ${time(Date.now())}`;
  } catch (e) {
    if (e.message === "unauthorized") {
      // Signed out already: leave the form and any message on it ("Wrong secret.") as they are.
      if (signedIn) showSignIn("The session ended; sign in again.");
      else $("sign-in").hidden = false;
    } else {
      $("status").textContent = `not updated: ${e.message}`;
    }
  }
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const reply = await fetch("/ui/session", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ secret: $("secret").value }),
  });
  $("secret").value = "";
  if (reply.ok) {
    await refresh();
  } else {
    showSignIn("Wrong secret.");
  }
});

$("sign-out").addEventListener("click", async () => {
  await fetch("/ui/session/end", { method: "POST", credentials: "same-origin" });
  showSignIn("Signed out.");
});

refresh();
setInterval(refresh, POLL_MS);
