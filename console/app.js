// mailhook operator console: a small hash-routed page. Everything that comes
// from the API is rendered as text (textContent / text nodes / setAttribute on
// harmless attributes); there is no innerHTML anywhere.
"use strict";
(() => {
  const app = document.getElementById("app");
  const SVGNS = "http://www.w3.org/2000/svg";
  // The statuses are the Worker's (GET /admin/stats `statuses`); BADGE only colours them.
  const FILTERS = ["provider", "type", "status", "destination", "thread", "from", "to"];
  const BADGE = { delivered: "ok", closed: "ok", queued: "warn", held: "warn", retrying: "warn",
    "half-open": "warn", half_open: "warn", dead: "bad", open: "bad" };
  const PAGE_SIZE = 50;
  let gen = 0; // render generation: async results of an older render are dropped

  // ---- DOM helpers: h(tag, attrs, ...children); strings become text nodes ----
  function build(el, attrs, kids) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
      else if (/^on/i.test(k)) throw new Error("inline handlers are not allowed");
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of kids.flat(Infinity)) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const h = (tag, attrs, ...kids) => build(document.createElement(tag), attrs, kids);
  const s = (tag, attrs, ...kids) => build(document.createElementNS(SVGNS, tag), attrs, kids);
  const h1 = (...kids) => h("h1", { tabindex: "-1" }, ...kids);
  const loading = () => h("p", { class: "loading", role: "status" }, "Loading…");
  const alertBox = (msg) => h("p", { class: "alert", role: "alert" }, msg);

  // ---- value helpers ----
  const obj = (x) => (x && typeof x === "object" && !Array.isArray(x) ? x : {});
  const own = (o, k) => (o && typeof o === "object" && Object.hasOwn(o, k) ? o[k] : undefined);
  const num = (v) => (typeof v === "number" && Number.isFinite(v) && v > 0 ? v : 0);
  const dash = (v) => (v == null || v === "" ? "—" : String(v));
  const pad = (n) => String(n).padStart(2, "0");
  const hhmm = (sec) => {
    const d = new Date(sec * 1000);
    return isNaN(d) ? "?" : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };
  const badge = (v, text) =>
    h("span", { class: "badge " + (Object.hasOwn(BADGE, v) ? BADGE[v] : "muted") }, text ?? dash(v));

  // A timestamp (RFC3339 or Unix seconds) in the browser's locale, raw value as title.
  function when(v) {
    if (v == null || v === "") return "—";
    const d = typeof v === "number" ? new Date(v * 1000) : new Date(String(v));
    if (isNaN(d)) return String(v);
    return h("time", { datetime: d.toISOString(), title: String(v) }, d.toLocaleString());
  }
  function addr(a) {
    if (!a || typeof a !== "object") return dash(a);
    return a.name ? `${a.name} <${a.email ?? ""}>` : dash(a.email);
  }
  // Shorten long text; the full text stays in the title attribute.
  function clipped(v, n) {
    if (v == null || v === "") return "—";
    const t = String(v);
    return t.length > n ? h("span", { title: t }, t.slice(0, n) + "…") : t;
  }
  const size = (n) => (typeof n === "number" ? `${n.toLocaleString()} B` : "—");
  // datetime-local <-> RFC3339 UTC (the hash keeps RFC3339 or Unix seconds).
  function toLocalInput(v) {
    if (!v) return "";
    const d = /^\d+$/.test(v) ? new Date(Number(v) * 1000) : new Date(v);
    if (isNaN(d)) return "";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }
  function toRfc3339(local) {
    const d = new Date(local); // "YYYY-MM-DDTHH:MM" is local time
    return isNaN(d) ? "" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  // ---- API ----
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(method, path, data) {
    const body = data === undefined ? undefined : JSON.stringify(data);
    let res;
    try {
      res = await fetch(path, {
        credentials: "same-origin",
        headers: { "X-Mailhook-Console": "1", ...(body ? { "content-type": "application/json" } : {}) },
        method,
        body,
      });
    } catch {
      throw new ApiError(0, "Network error: the server could not be reached.");
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (!res.ok) {
      const err = obj(own(json, "error"));
      const msg = typeof err.message === "string" && err.message ? err.message : `Request failed (HTTP ${res.status})`;
      throw new ApiError(res.status, msg);
    }
    return json;
  }

  // Fill a container with the nodes load() returns; errors become an alert,
  // a 401 shows the sign-in view.
  async function fill(box, my, load) {
    box.setAttribute("aria-busy", "true");
    box.classList.add("busy");
    try {
      const nodes = await load();
      if (my === gen) box.replaceChildren(...nodes.flat(Infinity).filter((n) => n != null));
    } catch (e) {
      if (my !== gen) return;
      if (e.status === 401) signin();
      else box.replaceChildren(alertBox(e.message || String(e)));
    } finally {
      box.removeAttribute("aria-busy");
      box.classList.remove("busy");
    }
  }
  // A button that POSTs to path, says report(response) in a role=status element
  // (or the error in a role=alert one), then calls done().
  function action(id, label, path, report, done) {
    const status = h("p", { class: "status", role: "status", id: id + "-status" });
    const alert = alertBox("");
    const btn = h("button", { type: "button", id, onclick: async () => {
      btn.disabled = true;
      status.textContent = alert.textContent = "";
      try {
        status.textContent = report(obj(await api("POST", path)));
        done();
      } catch (e) {
        if (e.status === 401) signin();
        else alert.textContent = e.message || String(e);
      } finally {
        btn.disabled = false;
      }
    } }, label);
    return h("div", { class: "actions" }, btn, status, alert);
  }

  // ---- layout ----
  function setNav(key) {
    for (const a of document.querySelectorAll("a[data-nav]")) {
      if (a.dataset.nav === key) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }
  function page(title, nav, ...nodes) {
    document.title = `${title} — mailhook console`;
    setNav(nav);
    app.replaceChildren(...nodes);
  }
  function navigate(hash) {
    if (location.hash === hash) route(true);
    else location.hash = hash;
  }
  const wrap = (table, label) =>
    h("div", { class: "table-wrap", role: "region", "aria-label": label, tabindex: "0" }, table);
  // A table of rows (arrays of cells) with a header row.
  function table(id, label, cols, rows, empty) {
    return wrap(h("table", { id },
      h("caption", { class: "vh" }, label),
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.length
        ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))
        : h("tr", {}, h("td", { colspan: cols.length, class: "empty" }, empty)))), label);
  }

  // ---- sign in / out ----
  function signin(message) {
    gen++;
    document.body.classList.add("signed-out");
    const input = h("input", { id: "token", name: "token", type: "password",
      autocomplete: "current-password", required: true, spellcheck: "false" });
    const err = alertBox(message || "");
    err.id = "signin-error";
    const btn = h("button", { type: "submit", class: "primary" }, "Sign in");
    const form = h("form", { id: "signin", onsubmit: async (ev) => {
      ev.preventDefault();
      const token = input.value;
      input.value = "";
      btn.disabled = true;
      err.textContent = "";
      try {
        await api("POST", "/console/session", { token });
        document.body.classList.remove("signed-out");
        route(true);
      } catch (e) {
        err.textContent = e.message || String(e);
        btn.disabled = false;
        input.focus();
      }
    } }, h("label", { for: "token" }, "Admin token"), input, btn, err);
    page("Sign in", null, h("section", { class: "signin" }, h1("Sign in"),
      h("p", {}, "Enter an admin token (a value of ADMIN_TOKEN) to open the console."), form));
    input.focus();
  }
  document.getElementById("signout").addEventListener("click", async () => {
    try {
      await api("DELETE", "/console/session");
      signin();
    } catch (e) {
      if (e.status === 401) signin();
      else app.prepend(alertBox(`Sign out failed: ${e.message}`));
    }
  });

  // ---- overview ----
  function overview(my) {
    const box = h("div", {}, loading());
    page("Overview", "overview", h1("Overview"), box);
    fill(box, my, async () => renderStats(obj(await api("GET", "/admin/stats"))));
  }
  const keysOf = (objs) => [...new Set(objs.flatMap((o) => Object.keys(obj(o))))];

  function renderStats(st) {
    const hours = (Array.isArray(st.hours) ? st.hours : []).map(obj);
    const totals = obj(st.totals);
    const provKeys = keysOf([st.providers, totals.providers, ...hours.map((x) => x.providers)]).sort();
    const provCls = new Map(provKeys.map((k, i) => [k, "k" + (i % 10)]));
    const statuses = (Array.isArray(st.statuses) ? st.statuses : []).map(String);
    const extra = keysOf([totals.outcomes, ...hours.map((x) => x.outcomes)]).filter((k) => !statuses.includes(k)).sort();
    const outKeys = [...statuses, ...extra];
    const outCls = new Map(outKeys.map((k, i) => [k, statuses.includes(k) ? "o-" + k : "k" + (i % 10)]));
    const lat = obj(st.latency_ms);
    return [
      h("p", { id: "total", class: "lead" }, `${totals.events ?? 0} events in the last 24 hours`),
      st.now ? h("p", { class: "hint" }, "As of ", when(st.now)) : null,
      h("div", { class: "charts" },
        chartBlock("chart-providers", "By provider", hours, "providers", provKeys, provCls, totals.providers),
        chartBlock("chart-outcomes", "By outcome", hours, "outcomes", outKeys, outCls, totals.outcomes)),
      h("section", { id: "latency" }, h("h2", {}, "Delivery latency"),
        !num(lat.count) || lat.p50 == null
          ? h("p", {}, "no deliveries yet")
          : h("dl", { class: "kv" },
            ["p50", "p90", "p99"].map((p) => [h("dt", {}, p), h("dd", {}, lat[p] == null ? "—" : `${lat[p]} ms`)]),
            h("dt", {}, "deliveries"), h("dd", {}, String(lat.count)))),
      health(st),
    ];
  }

  // A stacked bar chart (one <g> per hour) with its legend and a table of the numbers.
  function chartBlock(id, title, hours, field, keys, cls, totals) {
    const W = 480, H = 170, TOP = 14, BASE = 144, slot = W / Math.max(hours.length, 1), bw = slot * 0.72;
    const counts = hours.map((hr) => keys.reduce((t, k) => t + num(own(hr[field], k)), 0));
    const max = Math.max(1, ...counts);
    const r2 = (x) => Math.round(x * 100) / 100;
    const svg = s("svg", { id, class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H,
      role: "img", "aria-label": `${title}: events per hour over the last 24 hours` });
    svg.append(s("text", { x: 0, y: TOP - 4, class: "tick" }, `max ${max}`),
      s("line", { x1: 0, x2: W, y1: BASE + 0.5, y2: BASE + 0.5, class: "axis" }));
    hours.forEach((hr, i) => {
      const label = hhmm(hr.start);
      const g = s("g", { "data-hour": hr.start, "data-count": counts[i] });
      let y = BASE;
      for (const k of keys) {
        const v = num(own(hr[field], k));
        if (!v) continue;
        const bh = (v / max) * (BASE - TOP);
        y -= bh;
        g.append(s("rect", { x: r2(i * slot + (slot - bw) / 2), y: r2(y), width: r2(bw), height: r2(bh), class: cls.get(k) },
          s("title", {}, `${label} ${k}: ${v}`)));
      }
      svg.append(g);
      // The first label starts at the edge (centred, it would be cut off).
      if (i % 3 === 0) svg.append(s("text", { x: i === 0 ? 0 : r2(i * slot + slot / 2), y: H - 8, class: "tick", "text-anchor": i === 0 ? "start" : "middle" }, label));
    });
    return h("section", { class: "chart-block" }, h("h2", {}, title), svg,
      h("ul", { class: "legend" }, keys.map((k) => h("li", {},
        s("svg", { class: "sw", viewBox: "0 0 10 10", "aria-hidden": "true" }, s("rect", { width: 10, height: 10, class: cls.get(k) })), `${k} (${num(own(totals, k))})`))),
      h("details", { class: "raw" }, h("summary", {}, `${title}: table`),
        table(id + "-table", `${title}, events per hour`, ["Hour", ...keys, "Total"],
          hours.map((hr, i) => [hhmm(hr.start), ...keys.map((k) => String(num(own(hr[field], k)))), String(counts[i])]),
          "No data.")));
  }

  function health(st) {
    const provs = Object.entries(obj(st.providers)).sort(([a], [b]) => (a < b ? -1 : 1));
    const dests = Object.entries(obj(st.destinations)).sort(([a], [b]) => (a < b ? -1 : 1));
    return h("section", { id: "health" }, h("h2", {}, "Health"),
      h("h3", {}, "Providers"),
      provs.length
        ? h("ul", { class: "plain health", id: "health-providers" }, provs.map(([k, v]) => h("li", {}, h("strong", {}, k), " ",
          obj(v).configured ? h("span", { class: "badge ok" }, "configured") : h("span", { class: "badge muted" }, "not configured"))))
        : h("p", {}, "No providers."),
      h("h3", {}, "Destinations"),
      table("health-destinations", "Destinations", ["Destination", "Circuit", "Failures", "Configured", "Problem"],
        dests.map(([k, v]) => {
          const d = obj(v);
          return [h("strong", {}, k), badge(d.circuit), dash(d.failures), d.configured ? "yes" : "no",
            d.problem ? h("span", { class: "err" }, String(d.problem)) : "—"];
        }), "No destinations."));
  }

  // ---- event lists (Events and Dead letters) ----
  const pageOf = (params) => Math.max(1, parseInt(params.get("page"), 10) || 1);

  async function loadEvents(filters, params, base) {
    const q = new URLSearchParams(filters);
    q.set("limit", PAGE_SIZE);
    q.set("page", pageOf(params));
    const r = obj(await api("GET", "/admin/events?" + q));
    const evs = Array.isArray(r.events) ? r.events.map(obj) : [];
    const total = num(r.total), limit = num(r.limit) || PAGE_SIZE, pg = num(r.page) || pageOf(params);
    const pages = Math.max(1, Math.ceil(total / limit));
    const go = (n) => {
      const p = new URLSearchParams(params);
      if (n > 1) p.set("page", n); else p.delete("page");
      const qs = p.toString();
      navigate(base + (qs ? "?" + qs : ""));
    };
    return [
      table("events", "Events", ["Received", "Provider", "Type", "Status", "Attempts", "Last error", "ID"],
        evs.map((e) => [when(e.received_at), dash(e.provider), dash(e.type), badge(e.status), dash(e.attempts),
          h("span", { class: "err" }, clipped(e.last_error, 160)),
          h("a", { href: "#/events/" + encodeURIComponent(String(e.id)), class: "mono" }, String(e.id))]),
        "No events."),
      h("nav", { class: "pager", "aria-label": "Pages" },
        h("button", { type: "button", id: "prev", disabled: pg <= 1, onclick: () => go(pg - 1) }, "Previous"),
        h("span", { id: "page-info" }, `Page ${pg} of ${pages} · ${total} event${total === 1 ? "" : "s"}`),
        h("button", { type: "button", id: "next", disabled: pg >= pages, onclick: () => go(pg + 1) }, "Next")),
    ];
  }

  function eventsPage(my, params) {
    const box = h("div", {}, loading());
    page("Events", "events", h1("Events"), filterForm(params), box);
    const filters = new URLSearchParams();
    for (const k of FILTERS) { const v = params.get(k); if (v) filters.set(k, v); }
    fill(box, my, () => loadEvents(filters, params, "#/events"));
  }

  let providerNames = null;
  function filterForm(params) {
    const v = (k) => params.get(k) || "";
    const opt = (val, text, cur) => h("option", { value: val, selected: val === cur }, text);
    const field = (id, label, control) => h("div", { class: "field" }, h("label", { for: id }, label), control);
    const provider = h("select", { id: "f-provider", name: "provider" }, opt("", "Any", v("provider")),
      v("provider") ? opt(v("provider"), v("provider"), v("provider")) : null);
    const status = h("select", { id: "f-status", name: "status" }, opt("", "Any", v("status")),
      v("status") ? opt(v("status"), v("status"), v("status")) : null);
    // Provider names and statuses come from /admin/stats, asked once per page load; a failure leaves "Any" (the list itself reports 401s).
    providerNames ??= api("GET", "/admin/stats");
    providerNames.then((st) => {
      const cur = provider.value;
      const keys = new Set(Object.keys(obj(obj(st).providers)));
      if (cur) keys.add(cur);
      provider.replaceChildren(opt("", "Any", cur), ...[...keys].sort().map((k) => opt(k, k, cur)));
      const curStatus = status.value;
      const statuses = Array.isArray(obj(st).statuses) ? obj(st).statuses.map(String) : [];
      if (curStatus && !statuses.includes(curStatus)) statuses.push(curStatus);
      status.replaceChildren(opt("", "Any", curStatus), ...statuses.map((k) => opt(k, k, curStatus)));
    }, () => {});
    const form = h("form", { id: "filters", class: "filters", onsubmit: (ev) => {
      ev.preventDefault();
      const fd = new FormData(form), p = new URLSearchParams();
      for (const k of ["provider", "type", "status", "destination", "thread"]) {
        const x = String(fd.get(k) || "").trim();
        if (x) p.set(k, x);
      }
      for (const k of ["from", "to"]) {
        const x = fd.get(k) ? toRfc3339(String(fd.get(k))) : "";
        if (x) p.set(k, x);
      }
      const qs = p.toString();
      navigate("#/events" + (qs ? "?" + qs : ""));
    } },
      field("f-provider", "Provider", provider),
      field("f-type", "Type", h("input", { id: "f-type", name: "type", type: "text", value: v("type"), placeholder: "email.delivered" })),
      field("f-status", "Status", status),
      field("f-destination", "Destination", h("input", { id: "f-destination", name: "destination", type: "text", value: v("destination") })),
      field("f-thread", "Thread", h("input", { id: "f-thread", name: "thread", type: "text", value: v("thread"), placeholder: "<root@mail.example.com>" })),
      field("f-from", "Received from", h("input", { id: "f-from", name: "from", type: "datetime-local", value: toLocalInput(v("from")) })),
      field("f-to", "Received to", h("input", { id: "f-to", name: "to", type: "datetime-local", value: toLocalInput(v("to")) })),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Apply"),
        h("button", { type: "button", onclick: () => navigate("#/events") }, "Clear")));
    return form;
  }

  // ---- one event ----
  function eventPage(my, params, id) {
    const path = "/admin/events/" + encodeURIComponent(id);
    const box = h("div", {}, loading());
    // The bodies (what each destination would receive now) are a second read; without them the page still shows.
    const load = () => fill(box, my, async () => {
      const [e, b] = await Promise.all([api("GET", path), api("GET", path + "/bodies").catch(() => null)]);
      return renderEvent(obj(e), b && Array.isArray(b.bodies) ? b.bodies.map(obj) : null);
    });
    const replay = action("replay", "Replay", path + "/replay", (r) => {
      const dests = Array.isArray(r.destinations) ? r.destinations.map(String) : [];
      return `Replayed to ${dests.length ? dests.join(", ") : "no destinations"}`;
    }, () => setTimeout(() => { if (my === gen) load(); }, 1500));
    page(`Event ${id}`, "events", h("p", { class: "crumbs" }, h("a", { href: "#/events" }, "← Events")),
      h1("Event ", h("code", {}, id)), replay, box);
    load();
  }

  function renderEvent(e, bodies) {
    const ce = e.event && typeof e.event === "object" ? e.event : null;
    const d = obj(ce && ce.data);
    const to = Array.isArray(d.to) ? d.to : [];
    const atts = Array.isArray(obj(d.inbound).attachments) ? d.inbound.attachments.map(obj) : [];
    const kv = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
    const deliveries = (Array.isArray(e.deliveries) ? e.deliveries : []).map(obj);
    const attempts = (Array.isArray(e.delivery_attempts) ? e.delivery_attempts : []).map(obj);
    return [
      h("dl", { class: "kv", id: "summary" },
        kv("Provider", dash(e.provider)), kv("Type", dash(e.type)), kv("Status", badge(e.status)),
        kv("Attempts", dash(e.attempts)), kv("Received", when(e.received_at)), kv("Updated", when(e.updated_at)),
        kv("Subject", ce ? dash(d.subject) : "—"), kv("From", ce ? addr(d.from) : "—"),
        kv("To", to.length ? h("ul", { class: "plain" }, to.map((a) => h("li", {}, addr(a)))) : "—"),
        ce && d.recipient_tag != null ? kv("Recipient tag", h("span", { class: "mono", id: "recipient-tag" }, String(d.recipient_tag))) : null,
        ce && d.thread && typeof d.thread.id === "string" ? kv("Thread", h("span", { id: "thread" },
          h("a", { href: "#/events?" + new URLSearchParams({ thread: d.thread.id }) }, d.thread.id),
          d.thread.in_reply_to ? [" in reply to ", h("span", { class: "mono" }, String(d.thread.in_reply_to))] : null)) : null,
        ce && d.reply && typeof d.reply.text === "string" ? kv("Reply", h("pre", { class: "reply", id: "reply" }, clipped(d.reply.text, 2000))) : null,
        e.last_status != null ? kv("Last status", String(e.last_status)) : null,
        e.last_error ? kv("Last error", h("span", { class: "err" }, String(e.last_error))) : null,
        e.payload_ref ? kv("Payload", h("span", { class: "mono" }, String(e.payload_ref))) : null),
      h("h2", {}, "Deliveries"),
      table("deliveries", "Deliveries", ["Destination", "Status", "Attempts", "Last status", "Last error", "Updated"],
        deliveries.map((x) => [dash(x.destination), badge(x.status), dash(x.attempts), dash(x.last_status),
          h("span", { class: "err" }, dash(x.last_error)), when(x.updated_at)]), "No deliveries."),
      bodies ? [h("h2", {}, "What each destination receives"), h("div", { id: "bodies" }, bodies.length ? bodies.map(bodyOf)
        : h("p", { class: "note" }, "No destination takes this event now."))] : null,
      h("h2", {}, "Delivery attempts"),
      table("attempts", "Delivery attempts", ["Destination", "Attempt", "At", "Status", "Duration ms", "Error"],
        attempts.map((x) => [dash(x.destination), dash(x.attempt), when(x.at), dash(x.status_code), dash(x.duration_ms),
          h("span", { class: "err" }, dash(x.error))]), "No attempts yet."),
      ce && atts.length ? [h("h2", {}, "Attachments"),
        table("attachments", "Attachments", ["Filename", "Content type", "Size", "SHA-256", "Inline", "Content ID", "Link"],
          atts.map((a) => [dash(a.filename), dash(a.content_type), size(a.size), h("span", { class: "mono" }, dash(a.sha256)),
            a.inline ? "yes" : "no", dash(a.content_id), link(a.url)]), "")] : null,
      h("h2", {}, "Canonical event"),
      ce ? h("div", { class: "tree", id: "event-tree" }, tree("event", ce, 0))
        : h("p", { class: "note", id: "event-r2" }, "The event is stored in R2 (large); it is not shown here."),
    ];
  }

  // One destination's body, as the admin API made it now (its format or transform): shown as text, never as markup.
  function bodyOf(b) {
    const how = b.transform ? "transform " + String(b.transform) : "format " + String(b.format);
    const what = b.error ? h("span", { class: "err" }, "dead: " + String(b.error))
      : b.filtered ? "filtered: its transform gives nothing, so nothing is sent"
      : [String(b.content_type), b.truncated ? ` (the first 64 KiB of ${b.bytes} bytes)` : ""];
    const headers = Object.entries(obj(b.headers)).map(([k, v]) => `${k}: ${v}\n`).join("");
    let text = typeof b.body === "string" ? b.body : "";
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON, or cut: as it is */ }
    return h("details", { class: "body", "data-destination": String(b.destination) },
      h("summary", {}, h("strong", {}, String(b.destination)), " · ", h("span", { class: "mono" }, how), " · ", what),
      b.error || b.filtered ? null : h("pre", { class: "body" }, headers ? headers + "\n" + text : text));
  }

  // An attachment's link (made by the admin API, for an hour): a download, never a page; only http(s).
  function link(url) {
    return typeof url === "string" && /^https?:\/\//.test(url) ? h("a", { href: url, rel: "noreferrer", download: "", class: "download" }, "download") : "—";
  }

  // The event as nested <details>; content_base64 is never shown, long strings are cut.
  function tree(key, v, depth) {
    const k = h("span", { class: "k" }, key);
    if (key === "content_base64" && v != null) {
      return h("span", { class: "leaf" }, k, ": ",
        h("span", { class: "meta" }, `(base64, ${typeof v === "string" ? v.length : "?"} characters)`));
    }
    if (v && typeof v === "object") {
      const arr = Array.isArray(v);
      const entries = arr ? v.map((x, i) => [String(i), x]) : Object.entries(v);
      return h("details", { open: depth < 2 },
        h("summary", {}, k, " ", h("span", { class: "meta" }, arr ? `[${entries.length}]` : `{${entries.length}}`)),
        entries.length ? h("ul", {}, entries.map(([ck, cv]) => h("li", {}, tree(ck, cv, depth + 1)))) : null);
    }
    let leaf;
    if (typeof v === "string") {
      let shown = v.length > 500 ? v.slice(0, 500) : v;
      if (/[\uD800-\uDBFF]$/.test(shown) && shown.length < v.length) shown = shown.slice(0, -1);
      leaf = [h("span", { class: "str" }, JSON.stringify(shown)),
        shown.length < v.length ? h("span", { class: "meta" }, ` (${v.length - shown.length} more characters)`) : null];
    } else {
      leaf = h("span", { class: "lit" }, String(v));
    }
    return h("span", { class: "leaf" }, k, ": ", leaf);
  }

  // ---- dead letters ----
  function deadPage(my, params) {
    const box = h("div", {}, loading());
    const load = () => fill(box, my, () => loadEvents(new URLSearchParams({ status: "dead" }), params, "#/dead"));
    const replay = action("replay-dead", "Replay all dead letters", "/admin/replay?status=dead", (r) => {
      const rem = num(r.remaining);
      return `Replayed ${num(r.count)}` +
        (rem > 0 ? `; ${rem} dead letter${rem === 1 ? "" : "s"} remaining (press the button again for more)` : "");
    }, load);
    page("Dead letters", "dead", h1("Dead letters"),
      h("p", { class: "hint" }, "Events whose delivery failed for good. Replaying queues them again."), replay, box);
    load();
  }

  // ---- router ----
  function route(focus) {
    const my = ++gen;
    const raw = location.hash.replace(/^#/, "");
    const q = raw.indexOf("?");
    const path = (q < 0 ? raw : raw.slice(0, q)) || "/";
    const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
    let m;
    if (path === "/") overview(my);
    else if (path === "/events") eventsPage(my, params);
    else if ((m = /^\/events\/(.+)$/.exec(path))) {
      let id = null;
      try { id = decodeURIComponent(m[1]); } catch { /* malformed escape */ }
      // The server's own rule for ids: anything else (`..`, say) would let the browser rewrite the API path.
      if (id && /^[A-Za-z0-9_-]{1,64}$/.test(id)) eventPage(my, params, id); else notFound();
    } else if (path === "/dead") deadPage(my, params);
    else notFound();
    if (focus) app.querySelector("h1")?.focus();
  }
  function notFound() {
    page("Not found", null, h1("Not found"), h("p", {}, "There is no such page. ", h("a", { href: "#/" }, "Go to the overview.")));
  }

  async function init() {
    try {
      await api("GET", "/console/session");
    } catch (e) {
      if (e.status === 401) return signin();
      app.replaceChildren(alertBox(e.message), h("button", { type: "button", onclick: init }, "Retry"));
      return;
    }
    document.body.classList.remove("signed-out");
    route(false);
  }
  window.addEventListener("hashchange", () => {
    if (!document.body.classList.contains("signed-out")) route(true);
  });
  init();
})();
