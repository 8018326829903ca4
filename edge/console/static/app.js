// GenieHive console: reads /v1/cluster/* and /v1/models of this edge, and
// refreshes the page shown on each event of /v1/cluster/events. Every
// value from the fleet is untrusted (nodes report model names, errors...):
// it is set as text, never parsed as HTML.
"use strict";

const KEY = "geniehive.key";
const state = { key: sessionStorage.getItem(KEY) || "", page: "", seen: new Map(), summary: null, busy: false, again: false, models: null };
const $ = (id) => document.getElementById(id);

// el builds an element: attrs (class, text, data-*, aria-*, other
// attributes) and children (nodes or strings, set as text).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class HTTPError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

function authHeaders(extra) {
  const h = Object.assign({}, extra || {});
  if (state.key) h.Authorization = "Bearer " + state.key;
  return h;
}

async function api(path, opts) {
  opts = opts || {};
  const r = await fetch(path, { method: opts.method || "GET", headers: authHeaders(opts.headers), body: opts.body, cache: "no-store" });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : text || r.statusText;
    if (r.status === 401 || r.status === 403) showLogin(r.status === 403 ? "This key lacks reader scope." : state.key ? "This key was refused." : "");
    throw new HTTPError(r.status, msg);
  }
  return body;
}

// ---- formatting -------------------------------------------------------

const GiB = 1024 * 1024 * 1024;
const gib = (b) => (b / GiB).toFixed(1) + " GiB";
const pct = (x) => (Math.round(x * 1000) / 10) + "%";
const num = (x, unit) => (x === undefined || x === null || x === 0 ? "–" : (Math.round(x * 10) / 10) + (unit ? " " + unit : ""));
function ago(t) {
  if (!t || t.startsWith("0001")) return "–";
  const s = Math.round((Date.now() - Date.parse(t)) / 1000);
  if (s < 0) return "in " + (-s) + "s";
  if (s < 120) return s + "s ago";
  if (s < 7200) return Math.round(s / 60) + "m ago";
  return Math.round(s / 3600) + "h ago";
}
function until(t) {
  const s = Math.round((Date.parse(t) - Date.now()) / 1000);
  return s > 0 ? s + "s left" : "ending";
}
const plural = (n, one, many) => n + " " + (n === 1 ? one : many || one + "s");
const badge = (ok, yes, no, warn) => el("span", { class: "badge " + (ok ? "ok" : warn ? "warn" : "bad"), text: ok ? yes : no });

// ---- login and live status ---------------------------------------------

function showLogin(msg) {
  for (const s of document.querySelectorAll(".page")) s.hidden = true;
  $("login").hidden = false;
  $("keyerr").textContent = msg || "";
  $("key").focus();
}

function setLive(text, ok) {
  const l = $("live");
  l.textContent = text;
  l.className = "live " + (ok ? "ok" : "bad");
}

$("keyform").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.key = $("key").value.trim();
  $("key").value = "";
  sessionStorage.setItem(KEY, state.key);
  start(true);
});

$("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  state.key = "";
  location.reload();
});

// ---- the event stream -------------------------------------------------
// fetch rather than EventSource: EventSource cannot send the bearer token.

let streamCtl = null;
async function connect() {
  if (streamCtl) streamCtl.abort();
  const ctl = new AbortController();
  streamCtl = ctl;
  let wait = 2000;
  try {
    const r = await fetch("/v1/cluster/events", { headers: authHeaders(), signal: ctl.signal, cache: "no-store" });
    if (r.status === 401 || r.status === 403) { showLogin("This key was refused."); return; }
    if (!r.ok) throw new HTTPError(r.status, "events: " + r.status + " (updates paused)");
    setLive("live", true);
    const rd = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await rd.read();
      if (done) break;
      buf += dec.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        onEvent(block);
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (streamCtl !== ctl) return;
  setLive("disconnected: reconnecting", false);
  refresh(); // show what the APIs say meanwhile
  setTimeout(connect, wait);
}

function onEvent(block) {
  let name = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (name === "snapshot") {
    try { state.summary = JSON.parse(data); } catch (e) { return; }
    const deg = (state.summary.degraded || []).map((d) => d.code);
    setLive("live · updated " + new Date().toLocaleTimeString() + (deg.length ? " · this edge is DEGRADED: " + deg.join(", ") : ""), !deg.length);
    refresh();
  } else if (name === "shutdown") {
    setLive("edge stopping: reconnecting", false);
  }
}

// ---- pages --------------------------------------------------------------

const pages = { fleet: renderFleet, models: renderModels, routing: renderRouting, policy: renderPolicy, edges: renderEdges };

// route shows the page the fragment names and renders it (at start, the
// event stream's first event renders it instead: one read, not two).
function route(ev) {
  let p = location.hash.replace(/^#/, "");
  if (!pages[p]) p = "fleet";
  const changed = p !== state.page;
  state.page = p;
  for (const name of Object.keys(pages)) {
    $("page-" + name).hidden = name !== p;
    const a = $("nav-" + name);
    if (name === p) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.title = "GenieHive · " + p[0].toUpperCase() + p.slice(1);
  if (changed && ev) $(p + "-h").focus();
  if (ev || state.summary) refresh();
}

// refresh re-renders the page shown; calls during a render coalesce into one more.
async function refresh() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  try {
    do {
      state.again = false;
      try {
        await pages[state.page]();
        document.body.dataset.rendered = String((Number(document.body.dataset.rendered) || 0) + 1);
      } catch (e) {
        if (!(e instanceof HTTPError && (e.status === 401 || e.status === 403))) setLive("error: " + e.message, false);
      }
    } while (state.again);
  } finally { state.busy = false; }
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }

// Fleet: hosts with a VRAM bar per GPU, then services.
async function renderFleet() {
  const [hosts, svcs] = await Promise.all([api("/v1/cluster/hosts"), api("/v1/cluster/services")]);
  const byHost = new Map();
  for (const s of svcs.data) {
    if (!byHost.has(s.host_id)) byHost.set(s.host_id, []);
    byHost.get(s.host_id).push(s);
  }
  const now = new Map(hosts.data.map((h) => [h.id, h]));
  for (const h of hosts.data) state.seen.set(h.id, h);
  const cards = [];
  let up = 0;
  for (const [id, h] of [...state.seen.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    const cur = now.get(id);
    const live = !!(cur && cur.live);
    if (live) up++;
    cards.push(hostCard(cur || h, live, cur ? "" : "no heartbeat: removed from the registry", byHost.get(id) || []));
  }
  $("fleet-summary").textContent = `${plural(state.seen.size, "host")} (${up} up, ${state.seen.size - up} down) · ${plural(svcs.data.length, "service")}`;
  $("hosts").replaceChildren(...cards);
  fill($("services").tBodies[0], svcs.data.map(serviceRow));
}

function hostCard(h, live, why, svcs) {
  const models = [];
  for (const s of svcs) for (const a of s.assets || []) if (a.loaded) models.push({ name: a.name, bytes: a.size_vram || 0 });
  const card = el("article", { class: "host" + (live ? "" : " down"), "data-host": h.id, "data-status": live ? "up" : "down", "aria-label": "host " + h.id },
    el("h3", {}, h.id, badge(live, "UP", "DOWN")),
    el("p", { class: "meta" }, live ? `heartbeat ${ago(h.updated_at)} · ${plural(svcs.length, "service")}` : (why || "heartbeat expired " + ago(h.deadline))));
  const gpus = h.gpus || [];
  if (gpus.length === 0) card.append(el("p", { class: "meta", text: "no GPU figures reported" }));
  if (!live && gpus.length) card.append(el("p", { class: "meta", text: "last reported:" }));
  for (const g of gpus) card.append(gpuBar(g, gpus.length === 1 ? models : []));
  if (gpus.length !== 1 && models.length) {
    card.append(el("ul", { class: "legend", "aria-label": "loaded models" }, models.map((m, i) => el("li", { class: "c" + (i % 5) }, `${m.name} ${m.bytes ? gib(m.bytes) : ""}`))));
  }
  return card;
}

// gpuBar: used (split by loaded model when the host has one GPU: model
// sizes are per host, not per GPU) and free.
function gpuBar(g, models) {
  const total = g.vram_total_bytes || 0, used = Math.min(g.vram_used_bytes || 0, total);
  const label = total ? `GPU ${g.index} · ${g.name} · ${gib(used)} of ${gib(total)} used (${pct(used / total)}) · ${gib(total - used)} free` : `GPU ${g.index} · ${g.name} · no VRAM figures`;
  const fillEl = el("div", { class: "fill", "data-used": used, "data-total": total });
  fillEl.style.width = total ? (100 * used / total) + "%" : "0%";
  const legend = [];
  let rest = used;
  models.forEach((m, i) => {
    if (!m.bytes || !used) return;
    const b = Math.min(m.bytes, rest);
    rest -= b;
    const seg = el("span", { class: "seg c" + (i % 5), title: m.name });
    seg.style.width = (100 * b / used) + "%";
    fillEl.append(seg);
    legend.push(el("li", { class: "c" + (i % 5) }, `${m.name} ${gib(m.bytes)}`));
  });
  if (rest > 0 && legend.length) legend.push(el("li", { class: "other" }, `other ${gib(rest)}`));
  legend.push(el("li", { class: "free" }, `free ${gib(total - used)}`));
  return el("div", { class: "gpu" },
    el("div", { class: "gpulabel", text: label }),
    el("div", { class: "bar", role: "img", "aria-label": label }, fillEl),
    el("ul", { class: "legend" }, legend));
}

function serviceRow(s) {
  let health;
  if (!s.live) health = badge(false, "", "DOWN: heartbeat expired");
  else if (!s.healthy_now) health = badge(false, "", "UNHEALTHY" + (s.health_error ? ": " + s.health_error : ""));
  else if (!s.routable) health = badge(false, "", "NOT ROUTABLE", true);
  else health = badge(true, "HEALTHY");
  const probe = s.probe ? (s.probe.healthy ? `ok ${num(s.probe.latency_ms, "ms")} ${ago(s.probe.at)}` : "failed: " + (s.probe.error || "?")) : "–";
  const m = s.metrics || {};
  const loaded = (s.assets || []).filter((a) => a.loaded).map((a) => a.name);
  return el("tr", { class: s.live ? "" : "down", "data-service": s.id },
    el("th", { scope: "row", text: s.id }), el("td", { text: s.host_id }), el("td", { text: s.kind }),
    el("td", {}, health), el("td", { text: s.cooldown_until ? "cooling down, " + until(s.cooldown_until) : "–" }),
    el("td", { class: s.probe && !s.probe.healthy ? "bad" : "", text: probe }),
    el("td", { class: "num", text: m.queue_depth || 0 }),
    el("td", { class: "num", text: s.cluster_in_flight !== undefined ? s.cluster_in_flight : "–" }),
    el("td", { class: "num", text: num(m.latency_ms, "ms") }),
    el("td", { class: "num", text: num(m.tokens_per_second, "tok/s") }),
    el("td", { text: loaded.join(", ") || "none" }));
}

// Models: assets (where loaded, where they could be, offload class, roles)
// and roles.
async function renderModels() {
  const models = await api("/v1/models");
  state.models = models.data;
  const assets = models.data.filter((m) => m.geniehive && m.geniehive.kind === "asset");
  const roles = models.data.filter((m) => m.geniehive && m.geniehive.kind === "role");
  fill($("assets").tBodies[0], assets.map((m) => {
    const g = m.geniehive, svcs = g.services || [];
    const on = svcs.filter((s) => s.loaded).map((s) => s.id + (s.routable ? "" : " (not routable)"));
    const could = svcs.filter((s) => !s.loaded).map((s) => s.id);
    const off = g.offload ? `${g.offload.class} (${g.offload.score.toFixed(2)})` : "–";
    return el("tr", { "data-model": m.id, "data-loaded": g.loaded ? "yes" : "no" },
      el("th", { scope: "row", text: m.id }), el("td", { text: (g.operations || []).join(", ") }),
      el("td", {}, on.length ? el("span", { class: "ok", text: "LOADED on " + on.join(", ") }) : "not loaded"),
      el("td", { text: could.join(", ") || "–" }),
      el("td", { title: g.offload ? (g.offload.reasons || []).join("; ") : "", text: off }),
      el("td", { text: (g.roles || []).join(", ") || "–" }));
  }));
  fill($("roles").tBodies[0], roles.map((m) => {
    const g = m.geniehive;
    return el("tr", { "data-role": m.id },
      el("th", { scope: "row", text: m.id }), el("td", {}, badge(g.routable, "ROUTABLE", "NO ROUTE")),
      el("td", { text: (g.resolves_to || []).join(" → ") || "nothing live" }),
      el("td", { text: (g.candidates || []).join(", ") }), el("td", { text: (g.fallback_roles || []).join(", ") || "–" }));
  }));
}

// Routing: the routes/match explainer.
async function renderRouting() {
  if (!state.models) {
    try { state.models = (await api("/v1/models")).data; } catch (e) { state.models = []; }
  }
  const want = $("match-kind").value;
  $("match-names").replaceChildren(...state.models.filter((m) => m.geniehive && m.geniehive.kind === (want === "role" ? "role" : "asset")).map((m) => el("option", { value: m.id })));
  if (state.lastMatch) await explain(state.lastMatch);
}

$("match-kind").addEventListener("change", () => refresh());
$("matchform").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = {};
  q[$("match-kind").value] = $("match-name").value.trim();
  const p = $("match-prompt").value;
  if (p) q.prompt = p;
  state.lastMatch = q;
  explain(q).catch((e) => $("match").replaceChildren(el("p", { class: "error", role: "alert", text: e.message })));
});

async function explain(q) {
  const r = await api("/v1/cluster/routes/match", { method: "POST", body: JSON.stringify(q), headers: { "Content-Type": "application/json" } });
  const out = [el("p", {}, "Resolved as ", el("strong", { text: r.resolved_as }), ` (${r.operation})`)];
  if (r.deny) out.push(el("p", { class: "error", text: "Denied by the policy: " + (r.deny.message || r.deny.reason || JSON.stringify(r.deny)) }));
  if (r.targets.length) out.push(el("p", {}, "Targets: " + r.targets.map((t) => `${t.kind}:${t.name}${t.role ? " (role " + t.role + ")" : ""} [group ${t.group}]`).join(" → ")));
  if (r.tried && r.tried.length) out.push(el("p", { class: "meta", text: "Tried: " + r.tried.join("; ") }));
  const x = r.routing;
  if (x) {
    out.push(el("p", {}, `Strategy ${x.strategy} · outcome ${x.outcome} · picked `,
      el("strong", { id: "match-picked", text: x.picked ? x.picked + (x.picked_asset ? " (" + x.picked_asset + ")" : "") : "none" })));
    if (x.note) out.push(el("p", { class: "warn", text: x.note }));
    let max = 0;
    for (const c of x.candidates) for (const v of Object.values(c.signals || {})) max = Math.max(max, Math.abs(v));
    out.push(el("div", { class: "cands" }, x.candidates.map((c) => {
      const sigs = Object.entries(c.signals || {}).sort((a, b) => a[0].localeCompare(b[0]));
      return el("article", { class: "cand" + (c.picked ? " picked" : ""), "data-service": c.service, "data-rank": c.rank },
        el("h4", {}, `#${c.rank || "–"} ${c.service}`, c.picked ? el("span", { class: "badge ok", text: " PICKED" }) : "", c.saturated ? el("span", { class: "badge warn", text: " SATURATED" }) : ""),
        el("p", { class: "meta", text: `asset ${c.asset || c.target} · score ${c.score.toFixed(3)} · queue ${c.queue_depth} · in flight ${c.cluster_in_flight !== undefined ? c.cluster_in_flight : c.in_flight}` }),
        sigs.map(([k, v]) => {
          const b = el("span", { class: v < 0 ? "neg" : "" });
          b.style.width = (max ? 100 * Math.abs(v) / max : 0) + "%";
          return el("div", { class: "sig" }, el("span", { text: k }), el("div", { class: "sigbar", role: "img", "aria-label": `${k} ${v.toFixed(3)}` }, b), el("span", { class: "num", text: v.toFixed(3) }));
        }));
    })));
    if (x.skipped && x.skipped.length) out.push(el("p", { class: "meta", text: "Skipped: " + x.skipped.map((s) => `${s.service} (${s.reason || "not routable"})`).join(", ") }));
  }
  $("match").replaceChildren(...out);
}

// Policy: the bundle in Redis, this edge's engine, every replica's version.
async function renderPolicy() {
  const p = await api("/v1/cluster/policy");
  const kv = (pairs) => el("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  const out = [];
  out.push(el("h3", { text: "Pushed bundle" }));
  out.push(p.bundle ? kv([["Version", el("span", { id: "policy-bundle", text: p.bundle.version })], ["Pushed", `${p.bundle.pushed_at} (${ago(p.bundle.pushed_at)})`], ["Files", p.bundle.files.join(", ")]])
    : el("p", { id: "policy-bundle", text: "none pushed: edges run the shipped policy or policy.dir" }));
  if (p.local) {
    out.push(el("h3", { text: "This edge" }));
    out.push(kv([["Engine", p.local.engine], ["Version", el("span", { id: "policy-local", text: p.local.version })],
      ["Last reload", p.local.loaded_at ? `${p.local.loaded_at} (${ago(p.local.loaded_at)})` : "–"],
      ["Last refusal", p.local.error ? el("span", { class: "error", text: "REFUSED: " + p.local.error }) : "none"]]));
  }
  out.push(el("h3", {}, "Replicas ", badge(p.consistent, "CONSISTENT", "MIXED VERSIONS", true)));
  out.push(el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, ["Edge", "Engine", "Version", "Refusal"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, p.replicas.map((r) => el("tr", { "data-edge": r.edge },
      el("th", { scope: "row", text: r.edge }), el("td", { text: r.engine }), el("td", { text: r.version }),
      el("td", { class: r.error ? "error" : "", text: r.error ? "REFUSED: " + r.error : "none" })))))));
  $("policy").replaceChildren(...out);
}

// Edges: replicas, their versions and snapshot age.
async function renderEdges() {
  const [edges, h] = await Promise.all([api("/v1/cluster/edges"), api("/v1/cluster/health")]);
  const out = [el("p", { class: "summary" }, `This page is served by ${h.edge.id || "?"} · status `, badge(h.status === "ok", "OK", "DEGRADED"),
    ` · Redis ${h.redis.ok ? "ok " + h.redis.latency_ms + " ms" : "DOWN"} · snapshot v${h.snapshot.version}, ${h.snapshot.age_ms} ms old · probe leader ${h.probe_leader || "none"}`)];
  for (const d of h.edge.degraded || []) out.push(el("p", { class: "error", text: `DEGRADED: ${d.code}: ${d.detail}` }));
  out.push(el("div", { class: "scroll" }, el("table", { id: "edges-table" },
    el("thead", {}, el("tr", {}, ["Edge", "Address", "Version", "Started", "Policy", "Snapshot"].map((c) => el("th", { scope: "col", text: c })))),
    el("tbody", {}, edges.data.map((e) => el("tr", { "data-edge": e.id },
      el("th", { scope: "row", text: e.id }), el("td", { text: e.addr }), el("td", { text: e.version || "–" }),
      el("td", { text: ago(e.started_at) }), el("td", { text: `${e.policy_engine} ${e.policy_version}` + (e.policy_error ? " (REFUSED a bundle)" : "") }),
      el("td", { text: e.snapshot_version ? `v${e.snapshot_version}, ${ago(e.snapshot_built_at)}` : "–" })))))));
  $("edges").replaceChildren(...out);
}

// ---- start --------------------------------------------------------------

async function start(fromLogin) {
  $("login").hidden = true;
  try {
    await api("/v1/cluster/health");
  } catch (e) {
    if (e instanceof HTTPError && (e.status === 401 || e.status === 403)) return;
    setLive("edge unreachable: " + e.message, false);
  }
  $("forget").hidden = !state.key;
  route();
  if (fromLogin) $(state.page + "-h").focus();
  connect();
}

window.addEventListener("hashchange", route);
start();
