// patchbay status page: the route graph. Rooms grouped by account, one column per account
// (sources to the left, sinks to the right), an arrow for each direction a route relays, and
// on each its deliveries in the traffic window. Drawn as SVG from the data app.js reads, with
// app.js's helpers (el, svg, cut, numbers, data): this file is loaded first and only defines
// functions, which run once both files are in.
"use strict";

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

/** A graph stays readable up to a few dozen routes: past that, the busiest are drawn. */
const MAX_ROUTES = 40;

function drawnRoutes() {
  const all = data.routes;
  const note = $("graph-note");
  if (all.length <= MAX_ROUTES) {
    note.textContent = "";
    return all;
  }
  const busy = new Map();
  for (const e of data.traffic.edges) busy.set(e.route, (busy.get(e.route) || 0) + e.delivered + e.failed);
  note.textContent = `${numbers.format(all.length)} routes: the ${MAX_ROUTES} busiest are drawn.`;
  return [...all]
    .sort((a, b) => (busy.get(b.name) || 0) - (busy.get(a.name) || 0) || a.name.localeCompare(b.name))
    .slice(0, MAX_ROUTES);
}

function renderGraph() {
  const host = $("graph");
  const routes = drawnRoutes();
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

