// patchbay status page. Reads the admin API of the gateway that served it, with the admin
// token the operator typed (kept in sessionStorage: this tab only, gone when it closes), and
// follows the live feed (server-sent events read with fetch, so that the token travels in the
// Authorization header and never in a URL). Every text from the gateway is set as text, never
// as markup: chat messages are other people's input.
"use strict";

const TOKEN_KEY = "patchbay.admin-token";
const POLL_MS = 5000;
const FEED_MAX = 200;
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const numbers = new Intl.NumberFormat();

const data = {
  status: null,
  accounts: [],
  routes: [],
  outbox: [],
  dead: [],
  traffic: { window_minutes: 15, edges: [] },
  lastSeq: 0,
};
let token = sessionStorage.getItem(TOKEN_KEY);
let pollTimer = null;
let feedAbort = null;
let refreshSoon = null;

class Refused extends Error {}

// ---- the API -------------------------------------------------------------------------

async function api(path, method = "GET") {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}` },
    cache: "no-store",
  });
  if (response.status === 401 || response.status === 403) {
    throw new Refused(response.status === 403
      ? "That is not this gateway's admin token."
      : "This page needs the admin token.");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error((body && body.error) || `the gateway answered ${response.status}`);
  }
  return body;
}

// ---- small helpers -------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function stamp(ms) {
  return ms ? new Date(ms).toLocaleString([], { hour12: false }) : "";
}

/** A cell whose "x ago" text the clock keeps current. */
function since(tag, className, ms) {
  const node = el(tag, className, ago(ms));
  if (ms) {
    node.dataset.since = ms;
    node.title = stamp(ms);
  }
  return node;
}

function tickTimes() {
  for (const node of document.querySelectorAll("[data-since]")) {
    node.textContent = ago(Number(node.dataset.since));
  }
}

function cut(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// ---- sign in and out -----------------------------------------------------------------

function showGate(message) {
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("gate").hidden = false;
  $("gate-error").textContent = message || "";
  $("token").focus();
}

function signOut(message) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(pollTimer);
  pollTimer = null;
  if (feedAbort) feedAbort.abort();
  feedAbort = null;
  setLive("off", "live feed off");
  showGate(message);
}

async function signIn(event) {
  event.preventDefault();
  const offered = $("token").value.trim();
  if (!offered) return;
  $("gate-submit").disabled = true;
  token = offered;
  try {
    await api("/admin/status");
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    openBoard();
  } catch (err) {
    token = null;
    $("gate-error").textContent = err.message;
  } finally {
    $("gate-submit").disabled = false;
  }
}

function openBoard() {
  $("gate").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  refresh();
  clearInterval(pollTimer);
  pollTimer = setInterval(refresh, POLL_MS);
  connectFeed(1000);
}

// ---- reading the gateway -------------------------------------------------------------

async function refresh() {
  try {
    const [status, accounts, routes, outbox, dead, traffic] = await Promise.all([
      api("/admin/status"),
      api("/admin/accounts"),
      api("/admin/routes"),
      api("/admin/outbox"),
      api("/admin/dead-letters?limit=200"),
      api("/admin/traffic"),
    ]);
    Object.assign(data, { status, accounts, routes, outbox, dead, traffic });
    render();
  } catch (err) {
    if (err instanceof Refused) signOut(err.message);
    else setLive("reconnecting", `gateway not answering: ${err.message}`);
  }
}

/** Refresh shortly after the feed said something changed, once for a burst. */
function refreshAfterActivity() {
  if (refreshSoon) return;
  refreshSoon = setTimeout(() => {
    refreshSoon = null;
    refresh();
  }, 300);
}

function render() {
  renderStats();
  renderGraph();
  renderAccounts();
  renderOutbox();
  renderDead();
}

function renderStats() {
  const s = data.status;
  if (!s) return;
  const meta = $("meta");
  meta.replaceChildren();
  for (const [label, value] of [["version", s.version], ["engine", s.engine], ["up", duration(s.uptime_seconds)]]) {
    meta.append(`${label} `, el("b", "", value), "   ");
  }
  const delivered = data.traffic.edges.reduce((n, e) => n + e.delivered, 0);
  const oldest = data.outbox.reduce((m, b) => Math.max(m, b.oldest_waiting_seconds || 0), 0);
  const allUp = s.accounts_up === s.accounts;
  const tiles = [
    ["Accounts up", [`${s.accounts_up}`, el("small", "", ` / ${s.accounts}`)], allUp ? "good" : "bad", "accounts"],
    ["Routes", [numbers.format(s.routes)], "", "routes"],
    [`Delivered, ${data.traffic.window_minutes} min`, [numbers.format(delivered)], "", "delivered"],
    ["Waiting", [numbers.format(s.pending)], s.pending > 0 ? "warn" : "", "pending"],
    ["Oldest waiting", [s.pending > 0 ? duration(oldest) : "–"], oldest > 60 ? "warn" : "", "oldest"],
    ["Dead letters", [numbers.format(s.dead_letters)], s.dead_letters > 0 ? "bad" : "good", "dead"],
    ["Events stored", [numbers.format(s.events || 0)], "", "events"],
  ];
  const host = $("stats");
  host.replaceChildren(...tiles.map(([label, value, tone, key]) => {
    const tile = el("div", `stat ${tone}`);
    tile.dataset.stat = key;
    const v = el("div", "value");
    v.append(...value);
    tile.append(el("div", "label", label), v);
    return tile;
  }));
}

function accountState(name) {
  const account = data.accounts.find((a) => a.name === name);
  return account ? account.state : "connecting";
}

function renderAccounts() {
  const body = $("accounts").tBodies[0];
  body.replaceChildren(...data.accounts.map((a) => {
    const row = el("tr", `state-${a.state}`);
    row.dataset.account = a.name;
    const stateCell = el("td");
    stateCell.append(el("span", `pill state ${a.state}`, a.state));
    const name = el("td");
    name.append(el("span", "name", a.name));
    if (a.reason) name.append(el("span", "reason", a.reason));
    row.append(
      stateCell,
      name,
      since("td", "when", a.since_ms),
      el("td", "num", numbers.format(a.changes)),
      since("td", "when last-in", a.last_in_ms),
      since("td", "when last-out", a.last_out_ms),
      el("td", "num", numbers.format(a.waiting)),
    );
    return row;
  }));
}

function renderOutbox() {
  const body = $("outbox").tBodies[0];
  body.replaceChildren(...data.outbox.map((b) => {
    const row = el("tr");
    row.dataset.room = b.room;
    row.append(
      el("td", "", b.room),
      el("td", "num", numbers.format(b.depth)),
      el("td", "num", b.oldest_waiting_seconds == null ? "–" : duration(b.oldest_waiting_seconds)),
    );
    return row;
  }));
  $("outbox").hidden = data.outbox.length === 0;
  $("outbox-empty").hidden = data.outbox.length !== 0;
}

function renderDead() {
  const list = $("dead");
  list.replaceChildren(...data.dead.map((d) => {
    const item = el("li");
    item.dataset.deadId = d.id;
    const where = el("div", "where");
    where.append("to ", el("b", "", d.room), ` · route ${d.route} · from ${d.origin} · `,
      since("span", "", d.failed_at_ms));
    const text = el("div", "text");
    text.append(el("span", "author", `<${d.author}> `), d.text || `(${d.event.type})`);
    const actions = el("div", "actions");
    const retry = el("button", "primary retry", "Retry");
    retry.type = "button";
    retry.addEventListener("click", () => act(d, "retry", retry));
    const discard = el("button", "danger discard", "Discard");
    discard.type = "button";
    discard.addEventListener("click", () => {
      if (!discard.classList.contains("confirm")) {
        discard.classList.add("confirm");
        discard.textContent = "Discard for good?";
        setTimeout(() => {
          discard.classList.remove("confirm");
          discard.textContent = "Discard";
        }, 4000);
        return;
      }
      act(d, "discard", discard);
    });
    actions.append(retry, discard);
    item.append(where, text, el("div", "reason", d.reason), actions);
    return item;
  }));
  $("dead-empty").hidden = data.dead.length !== 0;
}

async function act(dead, action, button) {
  button.disabled = true;
  const notice = $("dead-notice");
  try {
    if (action === "retry") {
      await api(`/admin/dead-letters/${dead.id}/retry`, "POST");
      notice.className = "notice";
      notice.textContent = `Dead letter ${dead.id} is back in ${dead.room}'s outbox.`;
    } else {
      await api(`/admin/dead-letters/${dead.id}`, "DELETE");
      notice.className = "notice";
      notice.textContent = `Dead letter ${dead.id} discarded.`;
    }
  } catch (err) {
    if (err instanceof Refused) return signOut(err.message);
    notice.className = "notice bad";
    notice.textContent = `Dead letter ${dead.id}: ${err.message}`;
  }
  refresh();
}

// ---- the route graph -----------------------------------------------------------------

const DIRECTION_LABEL = { inout: "in · out", in: "in", out: "out" };
const COLUMN_ORDER = { in: 0, inout: 1, out: 2 };

/** Rooms grouped by account, one column per account; sources to the left, sinks right. */
function layout(routes) {
  const rooms = new Map();
  for (const route of routes) {
    for (const member of route.rooms) {
      let room = rooms.get(member.room);
      if (!room) {
        room = { key: member.room, account: member.account, name: member.room.slice(member.account.length + 1), dirs: new Set() };
        rooms.set(member.room, room);
      }
      room.dirs.add(member.direction);
    }
  }
  const accounts = new Map();
  for (const room of rooms.values()) {
    if (!accounts.has(room.account)) accounts.set(room.account, []);
    accounts.get(room.account).push(room);
  }
  const score = (list) => {
    let sum = 0;
    let n = 0;
    for (const room of list) for (const dir of room.dirs) { sum += COLUMN_ORDER[dir]; n += 1; }
    return n ? sum / n : 1;
  };
  const columns = [...accounts.entries()]
    .sort((a, b) => score(a[1]) - score(b[1]) || a[0].localeCompare(b[0]));
  return { rooms, columns };
}

function renderGraph() {
  const host = $("graph");
  const routes = data.routes;
  $("routes-hint").textContent = `deliveries per edge in the last ${data.traffic.window_minutes} min`;
  if (!routes.length) {
    host.replaceChildren(el("p", "empty", "No routes configured."));
    $("legend").replaceChildren();
    return;
  }
  const { columns } = layout(routes);
  const COL_W = 220, GAP = 170, PAD = 16, HEAD = 40, NODE_H = 30, NODE_GAP = 12, INSET = 12;
  const rowsMax = Math.max(...columns.map(([, list]) => list.length));
  const width = PAD * 2 + columns.length * COL_W + (columns.length - 1) * GAP + 60;
  const height = PAD * 2 + HEAD + rowsMax * (NODE_H + NODE_GAP) + INSET;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": "Routes" });

  const defs = svg("defs");
  for (const tone of ["idle", "active", "failing"]) {
    const marker = svg("marker", { id: `arrow-${tone}`, class: tone, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z" }));
    defs.append(marker);
  }
  root.append(defs);

  const place = new Map();
  const boxes = svg("g");
  columns.forEach(([account, list], c) => {
    const x = PAD + c * (COL_W + GAP);
    const state = accountState(account);
    const group = svg("g", { class: `account state-${state}`, "data-account": account });
    const boxH = HEAD + list.length * (NODE_H + NODE_GAP) + INSET - NODE_GAP;
    group.append(svg("rect", { class: "box", x, y: PAD, width: COL_W, height: boxH, rx: 6 }));
    group.append(svg("text", { class: "account-name", x: x + INSET, y: PAD + 24 }, cut(account, 20)));
    group.append(svg("circle", { class: "state-dot", cx: x + COL_W - INSET - 4, cy: PAD + 20, r: 4.5 }));
    group.append(svg("text", { class: "account-state", x: x + COL_W - INSET - 14, y: PAD + 24, "text-anchor": "end" }, state));
    list.forEach((room, r) => {
      const y = PAD + HEAD + r * (NODE_H + NODE_GAP);
      const node = svg("g", { class: "room", "data-room": room.key });
      node.append(svg("rect", { class: "node", x: x + INSET, y, width: COL_W - 2 * INSET, height: NODE_H, rx: 4 }));
      node.append(svg("text", { class: "room-name", x: x + INSET + 10, y: y + 19 }, cut(room.name, 20)));
      const dirs = [...room.dirs].map((d) => DIRECTION_LABEL[d]).join(", ");
      node.append(svg("text", { class: "room-dir", x: x + COL_W - INSET - 8, y: y + 19, "text-anchor": "end" }, dirs));
      node.append(svg("title", {}, `${room.key} (${dirs})`));
      group.append(node);
      place.set(room.key, { column: c, row: r, left: x + INSET, right: x + COL_W - INSET, mid: y + NODE_H / 2 });
    });
    boxes.append(group);
  });

  const counts = new Map(data.traffic.edges.map((e) => [`${e.route}\u0000${e.from}\u0000${e.to}`, e]));
  const lanes = new Map();
  const edges = svg("g");
  for (const route of routes) {
    const senders = route.rooms.filter((m) => m.direction !== "out");
    const takers = route.rooms.filter((m) => m.direction !== "in");
    for (const from of senders) {
      for (const to of takers) {
        if (from.room === to.room) continue;
        edges.append(edge(route.name, from.room, to.room, place, counts, lanes));
      }
    }
  }
  root.append(edges, boxes);
  // Labels above everything else, so that no box hides a count.
  for (const label of edges.querySelectorAll(".count")) root.append(label);
  host.replaceChildren(root);
  renderLegend(routes, counts);
}

/** One directed edge: a curve from the sender's side to the taker's, with its count. */
function edge(route, from, to, place, counts, lanes) {
  const a = place.get(from);
  const b = place.get(to);
  const traffic = counts.get(`${route}\u0000${from}\u0000${to}`) || { delivered: 0, failed: 0 };
  const tone = traffic.failed > 0 ? "failing" : traffic.delivered > 0 ? "active" : "idle";
  const pair = [from, to].sort().join("\u0000") + (a.column === b.column ? "" : a.column < b.column ? ">" : "<");
  const k = lanes.get(pair) || 0;
  lanes.set(pair, k + 1);
  let d, mx, my;
  if (a.column !== b.column) {
    // Rightward edges run above the centre line, leftward ones below: a two-way pair reads
    // as two parallel arrows.
    const right = a.column < b.column;
    const off = (5 + 8 * k) * (right ? -1 : 1);
    const x1 = right ? a.right : a.left;
    const x2 = right ? b.left : b.right;
    const y1 = a.mid + off;
    const y2 = b.mid + off;
    const dx = (x2 - x1) / 2;
    d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
    const t = right ? 0.4 : 0.6;
    mx = cubic(x1, x1 + dx, x2 - dx, x2, t);
    my = cubic(y1, y1, y2, y2, t);
  } else {
    // Two rooms of one account: a loop out to the right of the column.
    const down = a.row < b.row;
    const bow = 34 + 14 * Math.abs(a.row - b.row) + (down ? 0 : 22) + 10 * k;
    const x = a.right;
    d = `M${x},${a.mid - 4} C${x + bow},${a.mid - 4} ${x + bow},${b.mid + 4} ${x},${b.mid + 4}`;
    mx = cubic(x, x + bow, x + bow, x, 0.5);
    my = cubic(a.mid - 4, a.mid - 4, b.mid + 4, b.mid + 4, 0.5);
  }
  const group = svg("g", { class: `edge ${tone}`, "data-route": route, "data-from": from, "data-to": to, "data-delivered": traffic.delivered, "data-failed": traffic.failed });
  group.append(svg("path", { d, "marker-end": `url(#arrow-${tone})` }));
  const text = traffic.failed > 0 ? `${numbers.format(traffic.delivered)} · ${numbers.format(traffic.failed)} failed` : numbers.format(traffic.delivered);
  const w = 12 + 6.6 * text.length;
  const label = svg("g", { class: `count ${tone}`, "data-route": route, "data-from": from, "data-to": to });
  label.append(svg("rect", { x: mx - w / 2, y: my - 9, width: w, height: 18, rx: 9 }));
  label.append(svg("text", { x: mx, y: my + 4, "text-anchor": "middle" }, text));
  const title = `${route}: ${from} → ${to}\n${traffic.delivered} delivered, ${traffic.failed} failed in the last ${data.traffic.window_minutes} min`;
  group.append(svg("title", {}, title));
  label.append(svg("title", {}, title));
  group.append(label);
  return group;
}

function cubic(p0, p1, p2, p3, t) {
  const u = 1 - t;
  return u * u * u * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t * t * t * p3;
}

/** Each route's name, size and deliveries per minute. */
function renderLegend(routes, counts) {
  const legend = $("legend");
  legend.replaceChildren(...routes.map((route) => {
    const series = new Array(data.traffic.window_minutes).fill(0);
    let total = 0;
    for (const e of counts.values()) {
      if (e.route !== route.name) continue;
      total += e.delivered;
      e.per_minute.forEach((n, i) => { series[i] += n; });
    }
    const item = el("span", "route");
    item.dataset.route = route.name;
    item.append(el("b", "", route.name), ` · ${route.rooms.length} rooms · `, el("span", "num", numbers.format(total)), " delivered");
    const peak = Math.max(1, ...series);
    const spark = svg("svg", { class: "spark", width: series.length * 4, height: 16, viewBox: `0 0 ${series.length * 4} 16` });
    series.forEach((n, i) => {
      const h = n ? Math.max(2, (n / peak) * 16) : 0;
      spark.append(svg("rect", { x: i * 4, y: 16 - h, width: 3, height: h }));
    });
    item.append(spark);
    return item;
  }));
}

// ---- the live feed -------------------------------------------------------------------

function setLive(state, text) {
  $("live").dataset.state = state;
  $("live-text").textContent = text;
}

/** Follow /admin/events from the last activity seen; reconnect with backoff if it ends. */
async function connectFeed(wait) {
  if (!token) return;
  const controller = new AbortController();
  if (feedAbort) feedAbort.abort();
  feedAbort = controller;
  setLive("connecting", "connecting to the live feed…");
  let next = wait;
  try {
    const response = await fetch(`/admin/events?after=${data.lastSeq}`, {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      cache: "no-store",
      signal: controller.signal,
    });
    if (response.status === 401 || response.status === 403) return signOut("The gateway no longer takes this token.");
    if (!response.ok || !response.body) throw new Error(`the gateway answered ${response.status}`);
    setLive("live", "live");
    next = 1000;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        frame(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  if (controller.signal.aborted || !token) return;
  setLive("reconnecting", "live feed lost, reconnecting…");
  setTimeout(() => connectFeed(Math.min(next * 2, 15000)), next);
}

/** One server-sent event: `event:`, `id:` and `data:` lines. */
function frame(text) {
  let kind = "message";
  const lines = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") kind = value;
    else if (field === "data") lines.push(value);
  }
  if (!lines.length) return;
  if (kind === "skipped") {
    addFeed(el("li", "skipped", `${lines.join("")} older activities skipped (this page read too slowly)`));
    return;
  }
  let activity;
  try {
    activity = JSON.parse(lines.join("\n"));
  } catch {
    return;
  }
  if (activity.seq <= data.lastSeq) return;
  data.lastSeq = activity.seq;
  addFeed(feedItem(activity));
  if (activity.kind === "state") {
    // Shown at once; the refresh that follows brings the exact counts. A replayed change
    // older than what the table shows is history, not news.
    const account = data.accounts.find((a) => a.name === activity.account);
    if (account && activity.at_ms >= account.since_ms) {
      Object.assign(account, { state: activity.state, reason: activity.reason, since_ms: activity.at_ms });
      renderAccounts();
      renderGraph();
    }
  }
  refreshAfterActivity();
}

function feedItem(a) {
  const item = el("li", a.kind === "state" ? `state-${a.state}` : a.kind);
  item.dataset.kind = a.kind;
  const time = el("time", "", clock(a.at_ms));
  time.dateTime = new Date(a.at_ms).toISOString();
  const line = el("div", "line");
  let icon;
  if (a.kind === "state") {
    icon = a.state === "up" ? "●" : a.state === "down" ? "▼" : "◌";
    line.append(el("span", "who", a.account), ` is ${a.state}`);
    if (a.reason) line.append(el("span", "why", a.reason));
  } else {
    icon = a.kind === "delivered" ? "→" : "✕";
    line.append(el("span", "who", a.author), ": ", a.preview || `(${a.event_kind})`);
    const path = el("span", "path", `${a.origin} → ${a.room} · route ${a.route}`);
    if (a.kind === "delivered") path.append(` · ${numbers.format(a.latency_ms)} ms`);
    line.append(path);
    if (a.kind === "dead_lettered") line.append(el("span", "why", `dead letter: ${a.reason}`));
  }
  item.append(time, el("span", "icon", icon), line);
  return item;
}

function addFeed(item) {
  const feed = $("feed");
  item.classList.add("fresh");
  feed.prepend(item);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  $("feed-empty").hidden = true;
}

// ---- start ---------------------------------------------------------------------------

$("gate-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut(""));
setInterval(tickTimes, 1000);
if (token) openBoard();
else showGate("");
