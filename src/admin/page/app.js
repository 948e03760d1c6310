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
/** When the routes were last read. */
let routesRead = 0;
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
  routesRead = 0;
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
    // Routes change only on a reload (which the board shows as accounts coming and going),
    // and can be many: read them once a minute.
    const stale = Date.now() - routesRead > 60000;
    const [status, accounts, routes, outbox, dead, traffic] = await Promise.all([
      api("/admin/status"),
      api("/admin/accounts"),
      stale ? api("/admin/routes") : data.routes,
      api("/admin/outbox"),
      api("/admin/dead-letters?limit=200"),
      api("/admin/traffic"),
    ]);
    Object.assign(data, { status, accounts, routes, outbox, dead, traffic });
    if (stale) routesRead = Date.now();
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

/** Dead letters whose Discard was pressed once, until when a second press discards. */
const confirming = new Map();
/** What the dead-letter list shows, so that a refresh with nothing new leaves it alone. */
let deadShown = "";

function renderDead() {
  const now = Date.now();
  for (const [id, until] of confirming) if (until <= now) confirming.delete(id);
  const shown = JSON.stringify([data.dead.map((d) => d.id), [...confirming.keys()]]);
  if (shown === deadShown) return;
  deadShown = shown;
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
    const sure = confirming.has(d.id);
    const discard = el("button", sure ? "danger discard confirm" : "danger discard", sure ? "Discard for good?" : "Discard");
    discard.type = "button";
    discard.addEventListener("click", () => {
      if (!confirming.has(d.id)) {
        // Ask once more; the question stands for a few seconds, across refreshes.
        confirming.set(d.id, Date.now() + 4000);
        setTimeout(renderDead, 4100);
        renderDead();
        return;
      }
      confirming.delete(d.id);
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
    button.disabled = false;
  }
  const said = notice.textContent;
  setTimeout(() => { if (notice.textContent === said) notice.textContent = ""; }, 8000);
  refresh();
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
