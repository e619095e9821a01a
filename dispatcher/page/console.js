/*
 * The console's page.  Everything it shows comes from the console's API
 * with the token the login form keeps in sessionStorage (this tab only);
 * the live part is GET /api/events, read with fetch() so that the token
 * travels in the Authorization header as for every other request
 * (EventSource cannot send one).  When the stream breaks (a dispatcher
 * restart) the page tries again by itself, waiting a little longer each
 * time, up to 5 s.  Text from the dispatcher, the policy or a tenant is
 * only ever set as text (textContent), never as HTML.
 */
"use strict";

(function () {
  const KEY = "tunneld-console-token";
  const HISTORY_MS = 5 * 60 * 1000;   /* the graphs' span */
  const MAX_EVENTS = 40;
  const SVG = "http://www.w3.org/2000/svg";

  let token = sessionStorage.getItem(KEY);
  let stream = null;          /* the AbortController of the live stream */
  let retries = 0;
  let events = [];            /* newest last */
  const prev = new Map();     /* tunnel id -> {t, in, out} */
  const rows = new Map();     /* tunnel id -> <tr> */
  const history = new Map();  /* tenant -> [{t, in, out}] (bytes/s) */
  let stopTarget = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function bytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return "–";
    const u = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (Math.abs(n) >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? String(Math.round(n)) : n.toFixed(n < 10 ? 2 : 1)) +
      " " + u[i];
  }

  function rate(n) { return typeof n === "number" ? bytes(n) + "/s" : "–"; }

  function since(epochS, nowMs) {
    if (!epochS) return "–";
    let s = Math.max(0, Math.round(nowMs / 1000 - epochS));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  function setConn(state, text) {
    const c = $("conn");
    c.dataset.state = state;
    c.textContent = text || state;
  }

  function api(method, path) {
    const headers = { Authorization: "Bearer " + token };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (method === "POST") {
      headers["Content-Type"] = "application/json";
      init.body = "{}";
    }
    return fetch(path, init);
  }

  async function errorText(r) {
    try {
      const j = await r.json();
      if (j && typeof j.error === "string") return j.error;
    } catch (e) { /* not JSON */ }
    return "HTTP " + r.status;
  }

  /* ------------------------------------------------------------ login */

  function clearApp() {
    rows.clear();
    prev.clear();
    history.clear();
    events = [];
    $("tunnels").tBodies[0].replaceChildren();
    $("tenants").replaceChildren();
    $("figures").replaceChildren();
    $("policy").replaceChildren();
    $("events").replaceChildren();
    $("tunnel-count").textContent = "";
    $("action-result").textContent = "";
    $("reload-result").textContent = "";
  }

  function showLogin(msg) {
    const s = stream;
    stream = null;
    if (s) s.abort();
    token = null;
    sessionStorage.removeItem(KEY);
    clearApp();
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = msg || "";
    setConn("offline");
    $("token").focus();
  }

  async function login(ev) {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    token = t;
    let r;
    try {
      r = await api("GET", "/api/status");
    } catch (e) {
      showLogin("The console does not answer.");
      return;
    }
    if (r.status !== 200) {
      showLogin(r.status === 401 ? "Wrong token." :
        "Refused: " + await errorText(r));
      return;
    }
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    start();
  }

  function start() {
    $("login").hidden = true;
    $("login-error").textContent = "";
    $("app").hidden = false;
    $("logout").hidden = false;
    connect();
  }

  /* ------------------------------------------------------- the stream */

  function again(ac) {
    if (stream !== ac) return;          /* replaced, or logged out */
    setConn("reconnecting", "reconnecting…");
    const wait = Math.min(5000, 250 * Math.pow(2, retries++));
    setTimeout(() => { if (stream === ac) connect(); }, wait);
  }

  async function connect() {
    const ac = new AbortController();
    stream = ac;
    let r;
    try {
      r = await fetch("/api/events", {
        headers: { Authorization: "Bearer " + token },
        cache: "no-store", credentials: "omit", signal: ac.signal });
    } catch (e) {
      again(ac);
      return;
    }
    if (r.status === 401) {
      if (stream === ac) showLogin("The console refused the token.");
      return;
    }
    if (!r.ok || !r.body) {
      again(ac);
      return;
    }
    setConn("live");
    retries = 0;
    /* How many streams this page opened: 2 after one reconnection. */
    $("conn").dataset.opened = String(Number($("conn").dataset.opened || 0) + 1);
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (stream === ac) message(block);
        }
      }
    } catch (e) {
      /* aborted, or the connection broke */
    }
    again(ac);
  }

  function message(block) {
    let name = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;         /* a heartbeat */
      const c = line.indexOf(":");
      const f = c < 0 ? line : line.slice(0, c);
      const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
      if (f === "event") name = v;
      else if (f === "data") data.push(v);
    }
    if (!data.length) return;
    const v = JSON.parse(data.join("\n"));
    if (name === "hello") {
      events = Array.isArray(v) ? v.slice(-MAX_EVENTS) : [];
      renderEvents();
    } else if (name === "event") {
      events.push(v);
      if (events.length > MAX_EVENTS) events.shift();
      renderEvents();
    } else if (name === "gap") {
      events.push({ kind: "gap", time: Date.now(), missed: v.missed });
      renderEvents();
    } else if (name === "sample") {
      render(v);
    }
  }

  /* ----------------------------------------------------------- render */

  function figure(k, v, bad) {
    const f = el("div", "figure" + (bad ? " bad" : ""));
    f.append(el("div", "v", v), el("div", "k", k));
    return f;
  }

  function renderFigures(s, ntenants) {
    const st = s.status || {};
    const a = st.admissions || {};
    const x = st.exits || {};
    const f = [
      figure("tunnels", s.total),
      figure("tenants", ntenants),
      figure("admitted (101)", a["101"] || 0),
      figure("refused by policy", a.policy_refusal || 0),
      figure("bad requests (400)", a["400"] || 0),
      figure("unknown (404)", a["404"] || 0),
      figure("server errors (5xx)", a["5xx"] || 0, a["5xx"] > 0),
      figure("other answers", a.other || 0),
      figure("policy errors", st.policyErrors || 0, st.policyErrors > 0),
      figure("workers started", st.workersStarted || 0),
      figure("workers ended", st.workersEnded || 0),
    ];
    for (const k of Object.keys(x)) {
      if (x[k] > 0) f.push(figure("ended: " + k, x[k],
        k === "killed" || k === "seccomp" || k === "protocol_error"));
    }
    $("figures").replaceChildren(...f);
  }

  function limitsText(t) {
    const l = t.limits || {}, u = t.usage || {};
    const parts = [];
    if (l.maxStreams) parts.push("streams " + (u.streams || 0) + "/" + l.maxStreams);
    if (l.rateUp) parts.push("up " + rate(u.rateUp) + "/" + rate(l.rateUp));
    if (l.rateDown) parts.push("down " + rate(u.rateDown) + "/" + rate(l.rateDown));
    if (l.maxBytes) parts.push("bytes " + bytes(u.bytes) + "/" + bytes(l.maxBytes));
    if (l.maxConnectRate) parts.push("opens/s " + l.maxConnectRate);
    if (u.refusedStreams) parts.push("refused " + u.refusedStreams);
    return parts.length ? parts.join(", ") : "none";
  }

  const COLS = ["tenant", "tunnel", "client", "mode", "state", "since", "in",
    "out", "rin", "rout", "streams", "reconnects", "limits", "act"];
  const NUM = new Set(["in", "out", "rin", "rout", "streams", "reconnects"]);

  function newRow(t) {
    const tr = el("tr");
    tr.dataset.id = t.id;
    for (const c of COLS) tr.append(el("td", "c-" + c + (NUM.has(c) ? " num" : "")));
    const b = el("button", "stop", "Stop");
    b.type = "button";
    b.addEventListener("click", () => askStop(tr.dataset.id));
    tr.querySelector(".c-act").append(b);
    return tr;
  }

  /* A cell's text, and the number behind it (data-value) when there is
   * one, for whoever reads the page by machine. */
  function setCell(tr, c, text, value) {
    const td = tr.querySelector(".c-" + c);
    if (td.textContent !== text) td.textContent = text;
    if (typeof value === "number") td.dataset.value = String(Math.round(value));
    return td;
  }

  function render(s) {
    const now = s.time;
    const seen = new Set();
    const tenants = new Map();
    const body = $("tunnels").tBodies[0];
    for (const t of s.tunnels || []) {
      if (!t || typeof t.id !== "string") continue;
      seen.add(t.id);
      let rin = null, rout = null;
      const p = prev.get(t.id);
      if (typeof t.bytes_in === "number") {
        if (p && now > p.t) {
          rin = Math.max(0, (t.bytes_in - p.in) * 1000 / (now - p.t));
          rout = Math.max(0, (t.bytes_out - p.out) * 1000 / (now - p.t));
        }
        prev.set(t.id, { t: now, in: t.bytes_in, out: t.bytes_out });
      }
      const ten = tenants.get(t.tenant) || { n: 0, in: 0, out: 0 };
      ten.n++;
      ten.in += rin || 0;
      ten.out += rout || 0;
      tenants.set(t.tenant, ten);

      let tr = rows.get(t.id);
      if (!tr) {
        tr = newRow(t);
        rows.set(t.id, tr);
        body.append(tr);
      }
      setCell(tr, "tenant", t.tenant);
      setCell(tr, "tunnel", t.tunnel);
      setCell(tr, "client", t.client);
      setCell(tr, "mode", t.mode);
      setCell(tr, "state", t.state).className = "c-state state-" + t.state;
      setCell(tr, "since", since(t.started, now)).title =
        t.started ? new Date(t.started * 1000).toISOString() : "";
      setCell(tr, "in", bytes(t.bytes_in), t.bytes_in);
      setCell(tr, "out", bytes(t.bytes_out), t.bytes_out);
      setCell(tr, "rin", rate(rin), rin);
      setCell(tr, "rout", rate(rout), rout);
      setCell(tr, "streams", String(t.streams ?? "–"));
      setCell(tr, "reconnects", String(t.reconnects ?? "–"));
      setCell(tr, "limits", t.error ? "no figures: " + t.error : limitsText(t));
    }
    for (const [id, tr] of rows) {
      if (!seen.has(id)) {
        tr.remove();
        rows.delete(id);
        prev.delete(id);
      }
    }
    $("tunnel-count").textContent = s.total > (s.tunnels || []).length ?
      "(" + (s.tunnels || []).length + " of " + s.total + " shown)" :
      "(" + s.total + ")";
    renderTenants(tenants, now);
    renderFigures(s, tenants.size);
    renderPolicy((s.status || {}).policy);
  }

  /* In (blue) and out (green) over the samples kept: the span grows with
   * them from 30 s up to HISTORY_MS. */
  function graph(h, now) {
    const w = 300, ht = 48;
    const span = Math.min(HISTORY_MS, Math.max(30000, now - h[0].t));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + ht);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    let max = 1;
    for (const p of h) max = Math.max(max, p.in, p.out);
    const base = document.createElementNS(SVG, "line");
    base.setAttribute("class", "graph-base");
    base.setAttribute("x1", "0"); base.setAttribute("x2", String(w));
    base.setAttribute("y1", String(ht - 0.5)); base.setAttribute("y2", String(ht - 0.5));
    svg.append(base);
    for (const dir of ["in", "out"]) {
      const pl = document.createElementNS(SVG, "polyline");
      pl.setAttribute("class", "graph-" + dir);
      pl.setAttribute("points", h.map((p) => {
        const x = w - (now - p.t) / span * w;
        const y = ht - 1 - p[dir] / max * (ht - 4);
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" "));
      svg.append(pl);
    }
    const title = document.createElementNS(SVG, "title");
    title.textContent = "the last " + Math.round(span / 1000) +
      " s, peak " + rate(max);
    svg.append(title);
    return svg;
  }

  function renderTenants(tenants, now) {
    for (const [name, t] of tenants) {
      const h = history.get(name) || [];
      h.push({ t: now, in: t.in, out: t.out });
      while (h.length && now - h[0].t > HISTORY_MS) h.shift();
      history.set(name, h);
    }
    for (const name of history.keys()) {
      if (!tenants.has(name)) history.delete(name);
    }
    const cards = [];
    for (const name of [...tenants.keys()].sort()) {
      const t = tenants.get(name);
      const c = el("div", "tenant");
      c.dataset.tenant = name;
      c.append(el("h3", null, name));
      const p = el("div", "legend");
      p.append(el("span", null, t.n + (t.n === 1 ? " tunnel, " : " tunnels, ")),
        el("span", "in", "in " + rate(t.in)), el("span", null, " · "),
        el("span", "out", "out " + rate(t.out)));
      c.append(p, graph(history.get(name), now));
      cards.push(c);
    }
    $("tenants").replaceChildren(...cards);
  }

  function renderPolicy(p) {
    if (!p) return;
    const items = [
      ["handler", p.handler],
      ["canAccept", p.canAccept],
      ["loaded", p.loaded ? new Date(p.loaded * 1000).toLocaleString() : "–"],
    ];
    const lr = p.lastReload;
    let last = "none since the start";
    if (lr) {
      last = (lr.ok ? "loaded" : "failed, the previous policy stays") +
        " at " + new Date(lr.at * 1000).toLocaleTimeString([], { hour12: false }) +
        (lr.ok ? "" : ": " + lr.error);
    }
    items.push(["last reload", last]);
    const out = [];
    for (const [k, v] of items) {
      const dd = el("dd", null, v);
      if (k === "last reload") {
        dd.id = "last-reload";
        dd.className = lr ? (lr.ok ? "ok" : "error") : "";
      }
      out.push(el("dt", null, k), dd);
    }
    $("policy").replaceChildren(...out);
  }

  function eventText(e) {
    switch (e.kind) {
    case "refusal":
      return e.client + " refused with " + e.status +
        (e.reason ? ": " + e.reason : "");
    case "exit":
      return "tenant " + e.tenant + ", tunnel " + e.tunnel + " (worker " +
        e.pid + ") " + e.why + ": " + e.reason;
    case "reload":
      return e.ok ? "policy reloaded" : "policy reload failed: " + e.error;
    case "gap":
      return e.missed + " events missed";
    default:
      return JSON.stringify(e);
    }
  }

  function renderEvents() {
    const items = [];
    for (let i = events.length - 1; i >= 0; i--) {
      const e = events[i];
      const li = el("li");
      li.dataset.kind = e.kind;
      const tm = el("time", null, clock(e.time));
      tm.dateTime = new Date(e.time).toISOString();
      li.append(tm, el("span", "badge " + e.kind, e.kind), el("span", "text", eventText(e)));
      items.push(li);
    }
    $("events").replaceChildren(...items);
  }

  /* ---------------------------------------------------------- actions */

  function askStop(id) {
    const tr = rows.get(id);
    if (!tr) return;
    stopTarget = id;
    $("confirm-text").textContent = "Stop tunnel " +
      tr.querySelector(".c-tunnel").textContent + " of tenant " +
      tr.querySelector(".c-tenant").textContent +
      "? Its worker ends and its client is disconnected.";
    $("confirm").showModal();
  }

  async function doStop() {
    const id = stopTarget;
    stopTarget = null;
    $("confirm").close();
    if (!id) return;
    const out = $("action-result");
    try {
      const r = await api("POST", "/api/tunnels/" + encodeURIComponent(id) + "/stop");
      if (r.status === 401) { showLogin("The console refused the token."); return; }
      out.className = "note " + (r.ok ? "ok" : "error");
      out.textContent = r.ok ? "Tunnel stopped; its worker is ending." :
        "Could not stop it: " + await errorText(r);
    } catch (e) {
      out.className = "note error";
      out.textContent = "The console does not answer.";
    }
  }

  async function doReload() {
    const out = $("reload-result");
    out.className = "note";
    out.textContent = "Reloading…";
    try {
      const r = await api("POST", "/api/reload");
      if (r.status === 401) { showLogin("The console refused the token."); return; }
      out.className = "note " + (r.ok ? "ok" : "error");
      out.textContent = r.ok ? "Policy reloaded." :
        "The new policy did not load; the previous one stays.\n" +
        await errorText(r);
    } catch (e) {
      out.className = "note error";
      out.textContent = "The console does not answer.";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", () => showLogin(""));
    $("reload").addEventListener("click", doReload);
    $("confirm-ok").addEventListener("click", doStop);
    $("confirm-cancel").addEventListener("click", () => {
      stopTarget = null;
      $("confirm").close();
    });
    if (token) start();
    else showLogin("");
  });
})();
