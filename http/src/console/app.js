// eddy's web console: one page, no build step. It polls the broker's JSON admin API (/api/...)
// once a second for the view on screen, keeps a short history in memory for the sparklines and
// the lag chart, and streams push queries as server-sent events. Every text from the broker is
// put into the page with textContent, never as HTML.
"use strict";

const HISTORY = 60; // samples kept per series (a minute at one a second)
const state = {
  offsets: new Map(),   // topic -> [{t, end}]
  lag: new Map(),       // group -> [{t, lag}]
  serving: new Map(),   // processor -> serving version last seen
  switches: [],         // {name, from, to, at}
  push: null,           // the EventSource of a running push query
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) {
    const e = body && body.error ? body.error : { code: String(response.status), message: "" };
    throw new Error(e.code + ": " + e.message);
  }
  return body;
}

function push(series, key, sample) {
  const list = series.get(key) || [];
  list.push(sample);
  while (list.length > HISTORY) list.shift();
  series.set(key, list);
  return list;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function time(ms) { return new Date(ms).toLocaleTimeString(); }

// A line over the last samples of `values` (an SVG polyline).
function sparkline(values, width, height, testid) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  if (testid) svg.setAttribute("data-testid", testid);
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2f6fdf");
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}

// Records per second between successive samples of a counter.
function rates(samples, field) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    out.push(dt > 0 ? Math.max(0, (samples[i][field] - samples[i - 1][field]) / dt) : 0);
  }
  return out;
}

// ---- views -------------------------------------------------------------------------------

async function viewTopics(main) {
  const data = await api("/api/topics");
  const rows = data.topics.map((t) => {
    const history = push(state.offsets, t.name, { t: data.now_ms, end: t.end_offset });
    const perSecond = rates(history, "end");
    const last = perSecond.length ? perSecond[perSecond.length - 1] : 0;
    const parts = t.partitions.map((p) => `${p.partition}: ${p.start_offset}–${p.end_offset}`).join(", ");
    return el("tr", { "data-testid": "topic-row", "data-topic": t.name },
      el("td", {}, t.name, t.internal ? el("span", { class: "muted" }, " (internal)") : null),
      el("td", { class: "num" }, t.partitions.length),
      el("td", { class: "num", "data-testid": "topic-end" }, t.end_offset),
      el("td", { class: "num" }, bytes(t.size_bytes)),
      el("td", {}, sparkline(perSecond, 120, 24), " ", last.toFixed(0), "/s"),
      el("td", { class: "muted" }, parts));
  });
  main.replaceChildren(el("h2", {}, "Topics"),
    el("table", { "data-testid": "topics" },
      el("tr", {}, ["topic", "partitions", "records (end offsets)", "size", "throughput", "partitions: start–end"].map((h) => el("th", {}, h))),
      rows));
}

async function viewGroups(main) {
  const data = await api("/api/groups");
  const rows = data.groups.map((g) => el("tr", { "data-testid": "group-row", "data-group": g.group_id },
    el("td", {}, el("a", { href: "#group/" + encodeURIComponent(g.group_id) }, g.group_id)),
    el("td", {}, g.state), el("td", { class: "num" }, g.members)));
  main.replaceChildren(el("h2", {}, "Consumer groups"),
    rows.length ? el("table", { "data-testid": "groups" },
      el("tr", {}, ["group", "state", "members"].map((h) => el("th", {}, h))), rows)
      : el("p", { class: "muted" }, "No consumer groups yet."));
}

async function viewGroup(main, id) {
  const g = await api("/api/groups/" + encodeURIComponent(id));
  const history = push(state.lag, id, { t: g.now_ms, lag: g.lag });
  const members = g.members.map((m) => el("tr", {},
    el("td", {}, m.member_id), el("td", {}, m.client_id), el("td", { class: "num" }, m.member_epoch),
    el("td", {}, m.assigned.map((a) => `${a.topic} [${a.partitions.join(", ")}]`).join("; ")),
    el("td", {}, m.revoking.map((a) => `${a.topic} [${a.partitions.join(", ")}]`).join("; "))));
  const offsets = g.offsets.map((p) => el("tr", { "data-testid": "lag-row" },
    el("td", {}, p.topic), el("td", { class: "num" }, p.partition),
    el("td", { class: "num" }, p.committed === null ? "—" : p.committed),
    el("td", { class: "num" }, p.end_offset), el("td", { class: "num" }, p.lag), el("td", {}, p.owner)));
  main.replaceChildren(
    el("h2", {}, "Group ", g.group_id),
    el("p", {}, "state ", el("b", {}, g.state), " · epoch ", g.group_epoch, " · assignor ", g.assignor || "—",
      " · total lag ", el("b", { "data-testid": "group-lag" }, g.lag)),
    el("div", { class: "card" }, el("div", { class: "muted" }, "lag over time"),
      sparkline(history.map((s) => s.lag), 480, 80, "lag-chart")),
    el("h2", {}, "Members"),
    members.length ? el("table", {}, el("tr", {}, ["member", "client", "epoch", "assigned", "revoking"].map((h) => el("th", {}, h))), members)
      : el("p", { class: "muted" }, "No members."),
    el("h2", {}, "Committed offsets and lag"),
    el("table", {}, el("tr", {}, ["topic", "partition", "committed", "end offset", "lag", "owner"].map((h) => el("th", {}, h))), offsets));
}

function noteSwitches(processors) {
  for (const p of processors) {
    const before = state.serving.get(p.name);
    if (before !== undefined && before !== p.version) {
      state.switches.unshift({ name: p.name, from: before, to: p.version, at: p.last_switch_ms || Date.now() });
    }
    state.serving.set(p.name, p.version);
  }
}

function versionLine(p, role) {
  const eta = p.eta_ms === null ? "not moving" : (p.eta_ms / 1000).toFixed(1) + " s";
  return el("tr", { "data-testid": "version-" + role, "data-version": p.version },
    el("td", {}, role), el("td", { class: "num" }, p.version), el("td", {}, p.state),
    el("td", { class: "num" }, p.records_processed), el("td", { class: "num" }, p.lag),
    el("td", { class: "num" }, p.records_per_s.toFixed(0)), el("td", {}, eta),
    el("td", { class: "num" }, p.tasks.reduce((n, t) => n + t.state_keys, 0)),
    el("td", { class: "num" }, bytes(p.tasks.reduce((n, t) => n + t.state_bytes, 0))));
}

function processorCard(p) {
  const b = p.building;
  const head = ["role", "version", "state", "records done", "lag", "records/s", "ETA", "state keys", "state bytes"];
  const replay = b ? el("div", { class: "row", "data-testid": "replay" },
    "replaying version ", b.version, " from offset zero: ",
    el("span", { class: "progress" }, el("div", { "data-testid": "replay-progress", style: `width: ${(b.progress * 100).toFixed(1)}%` })),
    el("span", { "data-testid": "replay-percent" }, (b.progress * 100).toFixed(1) + "%"),
    ` (${b.records_processed} done, ${b.lag} to go)`) : null;
  const switched = p.last_switch_ms ? el("div", { class: "switch", "data-testid": "switchover" },
    `switched to version ${p.version} at ${time(p.last_switch_ms)}`,
    p.retired_version ? ` (version ${p.retired_version} retired, kept for rollback)` : "") : null;
  const tables = p.tables.map((t) => el("a", { href: "#tables/" + encodeURIComponent(p.name + "/" + t) }, t));
  return el("div", { class: "card", "data-testid": "processor", "data-processor": p.name },
    el("div", {}, el("b", {}, p.name), " serves version ", el("b", { "data-testid": "serving-version" }, p.version),
      " · sources ", p.sources.join(", "), " · tables ", ...tables.flatMap((t, i) => (i ? [", ", t] : [t])),
      p.outputs.length ? " · outputs " + p.outputs.join(", ") : "",
      " · switch-overs ", p.switchovers,
      " · snapshot age ", p.snapshot_age_ms === null ? "—" : (p.snapshot_age_ms / 1000).toFixed(0) + " s"),
    p.error ? el("div", { class: "error" }, p.error) : null,
    replay, switched,
    el("table", {}, el("tr", {}, head.map((h) => el("th", {}, h))), versionLine(p, "serving"), b ? versionLine(b, "building") : null));
}

async function viewProcessors(main) {
  const data = await api("/api/processors");
  noteSwitches(data.processors);
  const log = state.switches.map((s) => el("li", {}, `${time(s.at)}: ${s.name} switched from version ${s.from} to ${s.to}`));
  main.replaceChildren(el("div", {}, el("h2", {}, "Processors"),
    data.processors.length ? data.processors.map(processorCard) : el("p", { class: "muted" }, "No processors deployed."),
    log.length ? el("div", {}, el("h2", {}, "Switch-overs seen"), el("ul", { "data-testid": "switch-log" }, log)) : null));
}

// ---- tables and SQL (forms: built once, not redrawn by the poll) ------------------------------

function resultTable(rows) {
  return el("table", { "data-testid": "table-result" },
    el("tr", {}, el("th", {}, "key"), el("th", {}, "value")),
    rows.map((r) => el("tr", {}, el("td", {}, JSON.stringify(r.key)), el("td", {}, JSON.stringify(r.value)))));
}

function viewTables(main, preset) {
  const name = el("input", { placeholder: "table (or processor/table)", "data-testid": "table-name", value: preset || "" });
  const key = el("input", { placeholder: "key", "data-testid": "table-key" });
  const prefix = el("input", { placeholder: "prefix", "data-testid": "table-prefix" });
  const top = el("input", { placeholder: "N", size: "4", "data-testid": "table-top", value: "10" });
  const out = el("div", { "data-testid": "table-out" });
  const run = async (params) => {
    out.replaceChildren(el("span", { class: "muted" }, "…"));
    try {
      const q = new URLSearchParams({ name: name.value, ...params });
      const r = await api("/api/table?" + q.toString());
      out.replaceChildren(el("p", { class: "muted" }, `answered by ${r.processor} version ${r.version}`,
        r.digest ? ` · digest ${r.digest}` : ""), resultTable(r.rows));
    } catch (e) {
      out.replaceChildren(el("div", { class: "error", "data-testid": "table-error" }, e.message));
    }
  };
  main.replaceChildren(el("h2", {}, "Tables"),
    el("div", { class: "row" }, name),
    el("div", { class: "row" }, key, el("button", { "data-testid": "table-get", onclick: () => run({ key: key.value }) }, "Get")),
    el("div", { class: "row" }, prefix, el("button", { "data-testid": "table-scan", onclick: () => run({ prefix: prefix.value, limit: "100", digest: "1" }) }, "Browse by prefix (with digest)")),
    el("div", { class: "row" }, "top", top, el("button", { "data-testid": "table-topn", onclick: () => run({ top: top.value }) }, "Top N")),
    out);
}

function stopPush() {
  if (state.push) { state.push.close(); state.push = null; }
}

function sqlResult(r) {
  const x = r.result;
  const head = el("div", { class: "muted" }, r.statement);
  if (x.rows) {
    return el("div", { class: "card" }, head, el("table", { "data-testid": "sql-rows" },
      el("tr", {}, x.rows.columns.map((c) => el("th", {}, c))),
      x.rows.rows.map((row) => el("tr", {}, row.map((v) => el("td", {}, typeof v === "string" ? v : JSON.stringify(v)))))));
  }
  if (x.error) return el("div", { class: "card" }, head, el("div", { class: "error", "data-testid": "sql-error" }, x.error.message));
  return el("div", { class: "card" }, head, el("pre", {}, JSON.stringify(x, null, 1)));
}

function startPush(sql, out) {
  stopPush();
  const table = el("table", { "data-testid": "push-rows" });
  out.replaceChildren(el("p", { class: "muted", "data-testid": "push-status" }, "following changes…"), table);
  const source = new EventSource("/api/sql/push?" + new URLSearchParams({ sql }).toString());
  state.push = source;
  source.addEventListener("columns", (e) => table.append(el("tr", {}, JSON.parse(e.data).map((c) => el("th", {}, c)))));
  source.addEventListener("row", (e) => table.append(el("tr", { "data-testid": "push-row" }, JSON.parse(e.data).map((v) => el("td", {}, typeof v === "string" ? v : JSON.stringify(v))))));
  source.addEventListener("error", (e) => {
    if (e.data) out.prepend(el("div", { class: "error", "data-testid": "sql-error" }, JSON.parse(e.data).message));
    stopPush();
  });
}

function viewSql(main) {
  const input = el("textarea", { "data-testid": "sql-input", placeholder: "SELECT ... ; or a push query: SELECT ... EMIT CHANGES" });
  const out = el("div", { "data-testid": "sql-out" });
  const run = async () => {
    const sql = input.value.trim();
    if (/\bEMIT\s+CHANGES\b/i.test(sql) && /^\s*SELECT\b/i.test(sql)) return startPush(sql, out);
    stopPush();
    out.replaceChildren(el("span", { class: "muted" }, "…"));
    try {
      const r = await api("/api/sql", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ sql }) });
      out.replaceChildren(...r.results.map(sqlResult));
    } catch (e) {
      out.replaceChildren(el("div", { class: "error", "data-testid": "sql-error" }, e.message));
    }
  };
  main.replaceChildren(el("h2", {}, "SQL"), input,
    el("div", { class: "row" }, el("button", { "data-testid": "sql-run", onclick: run }, "Run"),
      el("button", { "data-testid": "sql-stop", onclick: stopPush }, "Stop push query")), out);
}

// ---- routing and polling -------------------------------------------------------------------

const POLLED = { topics: viewTopics, groups: viewGroups, processors: viewProcessors };

async function refresh() {
  const [view, arg] = location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
  const main = document.getElementById("main");
  const status = document.getElementById("status");
  try {
    if (view === "group") await viewGroup(main, arg);
    else if (POLLED[view || "topics"]) await POLLED[view || "topics"](main);
    status.textContent = "updated " + new Date().toLocaleTimeString();
    status.className = "";
  } catch (e) {
    status.textContent = "broker unreachable or not ready: " + e.message;
    status.className = "bad";
  }
}

function route() {
  stopPush();
  const [view, arg] = location.hash.replace(/^#/, "").split("/").map(decodeURIComponent);
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === (view === "group" ? "groups" : view || "topics"));
  const main = document.getElementById("main");
  if (view === "tables") viewTables(main, arg);
  else if (view === "sql") viewSql(main);
  else refresh();
}

window.addEventListener("hashchange", route);
route();
// Once a second; four times a second while a replay runs on the processors page, so its
// progress bar moves smoothly.
let ticks = 0;
setInterval(() => {
  const view = location.hash.replace(/^#/, "").split("/")[0];
  const replaying = view === "processors" && document.querySelector("[data-testid=replay]");
  if (view !== "tables" && view !== "sql" && (replaying || ticks % 4 === 0)) refresh();
  ticks++;
}, 250);
