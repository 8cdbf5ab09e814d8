// fjord's dashboard: reads the API every two seconds and shows it. Every value goes into
// the page as text (never as markup), so an object's name cannot inject anything.
"use strict";

const EVERY_MS = 2000;
const SOON_DAYS = 14;
// Request totals of the previous read, for rates: service name -> {total, serverErrors, at}.
let previous = new Map();

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fill(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const cols = document.querySelectorAll(`#${id} thead th`).length;
    body.append(el("tr", {}, el("td", { colspan: cols, class: "muted" }, "none")));
  }
}

function status(s, error) {
  return el("span", { class: `pill ${s}`, title: error || "" }, s);
}

async function read(path) {
  const response = await fetch(`../api/${path}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function rates(services, now) {
  const out = new Map();
  for (const s of services) {
    const was = previous.get(s.name);
    if (was && now > was.at) {
      const secs = (now - was.at) / 1000;
      const requests = Math.max(0, s.requests.total - was.total);
      const failed = Math.max(0, s.requests.serverErrors - was.serverErrors);
      out.set(s.name, { perSec: requests / secs, errorRatio: requests ? failed / requests : 0 });
    }
  }
  previous = new Map(services.map((s) => [s.name, { ...s.requests, at: now }]));
  return out;
}

function rateCells(rate) {
  if (!rate) return [el("td", { class: "num muted" }, "…"), el("td", { class: "num muted" }, "…")];
  const ratio = (rate.errorRatio * 100).toFixed(1) + " %";
  return [
    el("td", { class: "num" }, rate.perSec.toFixed(1)),
    el("td", { class: rate.errorRatio > 0 ? "num bad" : "num" }, ratio),
  ];
}

function showOverview(o) {
  document.getElementById("replica").textContent = `${o.replica} · v${o.version}`;
  const state = document.getElementById("state");
  state.textContent = o.ready ? "ready" : "starting";
  state.className = `pill ${o.ready ? "enabled" : "warning"}`;
  const card = (label, total, bad, badLabel) =>
    el("div", { class: "card" }, el("div", { class: "big" }, total), el("div", {}, label),
      bad ? el("div", { class: "bad" }, `${bad} ${badLabel}`) : el("div", { class: "muted" }, "all good"));
  document.getElementById("overview").replaceChildren(
    card("routes", o.routers.total, o.routers.errors, "broken"),
    card("services", o.services.total, o.services.errors, "without endpoints"),
    card("middlewares", o.middlewares.total, 0, ""),
    card("certificates", o.certificates.total, o.certificates.expiringSoon, `expiring within ${SOON_DAYS} days`),
    card("diagnostics", o.diagnostics.errors + o.diagnostics.warnings, o.diagnostics.errors,
      o.diagnostics.errors === 1 ? "error" : "errors"),
  );
}

function showDiagnostics(list) {
  const section = document.getElementById("diagnostics");
  section.hidden = list.length === 0;
  section.querySelector(".count").textContent = `(${list.length})`;
  section.querySelector("ul").replaceChildren(...list.map((d) =>
    el("li", { class: d.severity }, el("span", { class: `pill ${d.severity}` }, d.severity), " ",
      el("strong", {}, d.object), ": ", d.message)));
}

function showRouters(routers, rate) {
  fill("routers", routers.map((r) => {
    const match = r.rule || `${r.host || "*"}${r.path || ""}`;
    const extra = [r.tls ? "TLS" : null, r.entryPoints.length ? r.entryPoints.join(", ") : null,
      r.priority !== undefined ? `priority ${r.priority}` : null].filter(Boolean).join(" · ");
    return el("tr", { "data-name": r.name, class: r.status },
      el("td", {}, el("div", {}, r.name), el("div", { class: "muted small" }, r.source)),
      el("td", {}, el("code", {}, match), extra ? el("div", { class: "muted small" }, extra) : null),
      el("td", {}, ...r.middlewares.map((m) => el("span", { class: "chip" }, m))),
      el("td", {}, r.service, r.fallback ? el("div", { class: "muted small" }, `fallback ${r.fallback}`) : null),
      ...rateCells(rate.get(r.service)),
      el("td", {}, status(r.status, r.error), r.error ? el("div", { class: "small bad" }, r.error) : null));
  }));
}

function showServices(services, rate) {
  fill("services", services.map((s) => el("tr", { "data-name": s.name, class: s.status },
    el("td", {}, s.name),
    el("td", {}, s.protocol),
    el("td", {}, ...s.endpoints.map((e) =>
      el("div", { class: e.healthy ? "" : "bad" },
        `${e.address} · weight ${e.weight}${e.inFlight ? ` · ${e.inFlight} in flight` : ""}${e.healthy ? "" : ` · backing off (${e.failures} failures)`}`)),
      s.endpoints.length === 0 && s.protocol !== "internal" ? el("span", { class: "bad" }, "none") : null),
    ...rateCells(rate.get(s.name)),
    el("td", {}, status(s.status, s.error), s.error ? el("div", { class: "small bad" }, s.error) : null))));
}

function showCertificates(certs, now) {
  fill("certificates", certs.map((c) => {
    let expires = "unknown";
    if (c.notAfter !== undefined) {
      const days = Math.floor((c.notAfter * 1000 - now) / 86400000);
      expires = days < 0 ? `expired ${-days} days ago` : `in ${days} days (${c.expires.slice(0, 10)})`;
    }
    return el("tr", { class: c.expiringSoon ? "expiring" : "" },
      el("td", {}, c.names.join(", ")),
      el("td", {}, c.source, el("div", { class: "muted small" }, c.from)),
      el("td", { class: "small" }, c.issuer || ""),
      el("td", { class: c.expiringSoon ? "bad" : "" }, expires),
      el("td", {}, c.state || "served", c.lastError ? el("div", { class: "small bad" }, c.lastError) : null));
  }));
}

function showMiddlewares(list) {
  fill("middlewares", list.map((m) => el("tr", {},
    el("td", {}, m.name), el("td", {}, m.type), el("td", { class: "small" }, m.usedBy.join(", ")))));
}

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const [overview, routers, services, middlewares, certificates, diagnostics] = await Promise.all([
      read("overview"), read("http/routers"), read("http/services"), read("http/middlewares"),
      read("certificates"), read("diagnostics"),
    ]);
    const now = Date.now();
    const rate = rates(services, now);
    showOverview(overview);
    showDiagnostics(diagnostics);
    showRouters(routers, rate);
    showServices(services, rate);
    showCertificates(certificates, now);
    showMiddlewares(middlewares);
    updated.textContent = `updated ${new Date(now).toLocaleTimeString()}`;
    updated.className = "muted";
  } catch (e) {
    updated.textContent = `cannot reach fjord: ${e.message}`;
    updated.className = "bad";
  }
}

refresh();
setInterval(refresh, EVERY_MS);
