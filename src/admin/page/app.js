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
/** When this page opened: older activities are history and are not highlighted. */
let openedAt = Date.now();

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
  openedAt = Date.now();
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
  // From the accounts table, which the live feed keeps current between refreshes.
  const up = data.accounts.filter((a) => a.state === "up").length;
  const total = data.accounts.length;
  const tiles = [
    ["Accounts up", [`${up}`, el("small", "", ` / ${total}`)], up === total ? "good" : "bad", "accounts"],
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
  const said = notice.textContent;
  setTimeout(() => { if (notice.textContent === said) notice.textContent = ""; }, 8000);
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

/** Every directed edge of the routes: from each room that sends to each room that takes. */
function directedEdges(routes) {
  const edges = [];
  for (const route of routes) {
    const senders = route.rooms.filter((m) => m.direction !== "out");
    const takers = route.rooms.filter((m) => m.direction !== "in");
    for (const from of senders) {
      for (const to of takers) {
        if (from.room !== to.room) edges.push({ route: route.name, from: from.room, to: to.room });
      }
    }
  }
  return edges;
}

// Graph geometry, in SVG units (the drawing scales down to the panel's width).
const G = { COL_W: 250, GAP: 210, PAD: 16, HEAD: 44, NODE_H: 34, NODE_GAP: 12, INSET: 12, ARC_STEP: 24 };

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
  const column = new Map();
  columns.forEach(([, list], c) => list.forEach((room) => column.set(room.key, c)));
  const all = directedEdges(routes);
  // Edges between columns that are not neighbours go over the boxes (rightward) or under
  // them (leftward), each on its own level, so that no line or count crosses a box.
  let above = 0;
  let below = 0;
  for (const e of all) {
    const [a, b] = [column.get(e.from), column.get(e.to)];
    if (Math.abs(a - b) < 2) continue;
    e.level = a < b ? above++ : below++;
  }
  const top = G.PAD + (above ? 26 + above * G.ARC_STEP : 0);
  const rowsMax = Math.max(...columns.map(([, list]) => list.length));
  const boxesBottom = top + G.HEAD + rowsMax * (G.NODE_H + G.NODE_GAP) + G.INSET - G.NODE_GAP;
  const width = G.PAD * 2 + columns.length * G.COL_W + (columns.length - 1) * G.GAP + 70;
  const height = boxesBottom + G.PAD + (below ? 26 + below * G.ARC_STEP : 0);
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
    const x = G.PAD + c * (G.COL_W + G.GAP);
    const state = accountState(account);
    const group = svg("g", { class: `account state-${state}`, "data-account": account });
    const boxH = G.HEAD + list.length * (G.NODE_H + G.NODE_GAP) + G.INSET - G.NODE_GAP;
    group.append(svg("rect", { class: "box", x, y: top, width: G.COL_W, height: boxH, rx: 6 }));
    group.append(svg("text", { class: "account-name", x: x + G.INSET, y: top + 27 }, cut(account, 22)));
    group.append(svg("circle", { class: "state-dot", cx: x + G.COL_W - G.INSET - 4, cy: top + 22, r: 4.5 }));
    group.append(svg("text", { class: "account-state", x: x + G.COL_W - G.INSET - 14, y: top + 26.5, "text-anchor": "end" }, state));
    group.append(svg("title", {}, `${account}: ${state}`));
    list.forEach((room, r) => {
      const y = top + G.HEAD + r * (G.NODE_H + G.NODE_GAP);
      const node = svg("g", { class: "room", "data-room": room.key });
      node.append(svg("rect", { class: "node", x: x + G.INSET, y, width: G.COL_W - 2 * G.INSET, height: G.NODE_H, rx: 4 }));
      node.append(svg("text", { class: "room-name", x: x + G.INSET + 10, y: y + 21.5 }, cut(room.name, 22)));
      const dirs = [...room.dirs].map((d) => DIRECTION_LABEL[d]).join(", ");
      node.append(svg("text", { class: "room-dir", x: x + G.COL_W - G.INSET - 9, y: y + 21, "text-anchor": "end" }, dirs));
      node.append(svg("title", {}, `${room.key} (${dirs})`));
      group.append(node);
      place.set(room.key, { column: c, row: r, left: x + G.INSET, right: x + G.COL_W - G.INSET, mid: y + G.NODE_H / 2 });
    });
    boxes.append(group);
  });

  const counts = new Map(data.traffic.edges.map((e) => [`${e.route}\u0000${e.from}\u0000${e.to}`, e]));
  const lanes = new Map();
  const lines = svg("g");
  const labels = svg("g");
  const levels = { top, bottom: boxesBottom };
  for (const e of all) {
    const [line, label] = edge(e, place, counts, lanes, levels);
    lines.append(line);
    labels.append(label);
  }
  // Counts above everything else, so that no box or line hides one.
  root.append(lines, boxes, labels);
  host.replaceChildren(root);
  renderLegend(routes, counts);
}

/** One directed edge: its curve, and its count as a separate label. */
function edge(e, place, counts, lanes, levels) {
  const { route, from, to } = e;
  const a = place.get(from);
  const b = place.get(to);
  const traffic = counts.get(`${route}\u0000${from}\u0000${to}`) || { delivered: 0, failed: 0 };
  const tone = traffic.failed > 0 ? "failing" : traffic.delivered > 0 ? "active" : "idle";
  const h = G.GAP / 2;
  let d, mx, my;
  if (e.level !== undefined) {
    // Over (rightward) or under (leftward) the columns between: up or down in the gap next
    // to the sender, across, and back in the gap next to the taker.
    const right = a.column < b.column;
    const y = right ? levels.top - 18 - e.level * G.ARC_STEP : levels.bottom + 18 + e.level * G.ARC_STEP;
    const s = right ? 1 : -1;
    const [x1, x2] = right ? [a.right, b.left] : [a.left, b.right];
    d = `M${x1},${a.mid} C${x1 + s * h},${a.mid} ${x1 + s * h},${y} ${x1 + s * (h + 24)},${y} ` +
      `L${x2 - s * (h + 24)},${y} C${x2 - s * h},${y} ${x2 - s * h},${b.mid} ${x2},${b.mid}`;
    mx = (x1 + x2) / 2;
    my = y;
  } else if (a.column !== b.column) {
    // Neighbours: rightward edges run above the centre line and leftward ones below, with
    // their counts on their own side, so a two-way pair reads as two arrows.
    const right = a.column < b.column;
    const pair = `${[from, to].sort().join("\u0000")}${right ? ">" : "<"}`;
    const k = lanes.get(pair) || 0;
    lanes.set(pair, k + 1);
    const off = (6 + 10 * k) * (right ? -1 : 1);
    const x1 = right ? a.right : a.left;
    const x2 = right ? b.left : b.right;
    const y1 = a.mid + off;
    const y2 = b.mid + off;
    const dx = (x2 - x1) / 2;
    d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
    mx = (x1 + x2) / 2;
    my = (y1 + y2) / 2 + (right ? -13 : 13);
  } else {
    // Two rooms of one account: a loop out to the right of the column.
    const down = a.row < b.row;
    const bow = Math.min(G.GAP * 0.6, 34 + 14 * Math.abs(a.row - b.row) + (down ? 0 : 22));
    const x = a.right;
    d = `M${x},${a.mid - 4} C${x + bow},${a.mid - 4} ${x + bow},${b.mid + 4} ${x},${b.mid + 4}`;
    mx = x + bow * 0.75;
    my = (a.mid + b.mid) / 2;
  }
  const attrs = { "data-route": route, "data-from": from, "data-to": to, "data-delivered": traffic.delivered, "data-failed": traffic.failed };
  const line = svg("g", { class: `edge ${tone}`, ...attrs });
  line.append(svg("path", { d, "marker-end": `url(#arrow-${tone})` }));
  const text = traffic.failed > 0
    ? `${numbers.format(traffic.delivered)} · ${numbers.format(traffic.failed)} failed`
    : numbers.format(traffic.delivered);
  const w = 14 + 6.8 * text.length;
  const label = svg("g", { class: `count ${tone}`, ...attrs });
  label.append(svg("rect", { x: mx - w / 2, y: my - 9.5, width: w, height: 19, rx: 9.5 }));
  label.append(svg("text", { x: mx, y: my + 4, "text-anchor": "middle" }, text));
  const title = `${route}: ${from} → ${to}\n${traffic.delivered} delivered, ${traffic.failed} failed in the last ${data.traffic.window_minutes} min`;
  line.append(svg("title", {}, title));
  label.append(svg("title", {}, title));
  return [line, label];
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
    addFeed(el("li", "skipped", `${lines.join("")} older activities skipped (this page read too slowly)`), true);
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
  addFeed(feedItem(activity), activity.at_ms >= openedAt);
  if (activity.kind === "state") {
    // Shown at once; the refresh that follows brings the exact counts. A replayed change
    // older than what the table shows is history, not news.
    const account = data.accounts.find((a) => a.name === activity.account);
    if (account && activity.at_ms >= account.since_ms) {
      Object.assign(account, { state: activity.state, reason: activity.reason, since_ms: activity.at_ms });
      renderStats();
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

function addFeed(item, fresh) {
  const feed = $("feed");
  if (fresh) item.classList.add("fresh");
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
