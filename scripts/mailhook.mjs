// The mailhook command line: `npm run mailhook -- <command>`.
//
//   send <provider> [fixture | --type TYPE]   a provider's "send test event" button
//   send email-routing [file.eml] [--from A --to B]   a message handed to the Worker's email handler
//   export [--from D] [--to D] [--limit N] [--page N] [--format jsonl|csv] [--provider P] [--type T] [--status S] [--destination NAME] [--thread ID]
//   replay <id> [--destination NAME] | --dead|--unrouted [--destination NAME] [--from D] [--to D]
//   destinations                            each destination, its circuit and its deliveries by status
//   doctor                                  what is wrong with a running mailhook, each finding with its fix
//   transform <destination> [<id> | <provider>/<fixture> | file.json]   what the destination receives of an event
//                                           (a logged event, a fixture's canonical event, or a canonical event's file)
//   connect <provider> | disconnect mailtura     a provider's side of the connection (scripts/connect.mjs)
//
// Options everywhere: --url (default $MAILHOOK_URL or http://127.0.0.1:8787).
// Secrets come from the environment, else from .dev.vars.
import { randomBytes, createHmac } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connectCommand } from "./connect.mjs";
import { readDevVars } from "./demo-origin.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function fail(message) {
  console.error(`mailhook: ${message}`);
  process.exit(2);
}

const devVarsFile = path.join(root, ".dev.vars");
const devVars = existsSync(devVarsFile) ? readDevVars(devVarsFile) : {};

/** A secret from the environment, else `.dev.vars`; of several (rotation), the newest, last. */
function secret(name) {
  return process.env[name] ?? devVars[name]?.split(",").pop().trim();
}

const hex = (n) => randomBytes(n).toString("hex");
const nowSec = () => Math.floor(Date.now() / 1000);

function loadFixture(provider, name, ext = "json") {
  const file = existsSync(name) ? name : path.join(root, "fixtures", provider, `${name}.${ext}`);
  if (!existsSync(file)) fail(`no fixture ${name} for ${provider} (see fixtures/${provider}/)`);
  return ext === "json" ? JSON.parse(readFileSync(file, "utf8")) : readFileSync(file);
}

/** Each provider: a default fixture, how to pick one by type, and how to make a payload new. */
const BUILD = {
  maileroo: {
    fixture: (type) => type ?? "delivered",
    fresh(p) {
      p.event_id = hex(12);
      p.message_id = `<${hex(8)}@mailhook.test>`;
    },
    retime: (p) => (p.event_time = nowSec()),
  },
  mailtura: {
    fixture: (type) => (type ?? "delivered").replace(/^email\./, ""),
    fresh: (p) => (p.id = `evt_${hex(6)}`),
    retime: (p) => (p.timestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z")),
  },
  "adm-tools": {
    fixture: (type) => ({ undefined: "new", new: "new", create: "create", "flags-set": "flags-set", deleted: "flags-set-deleted" })[type] ?? type,
    fresh: (p) => (p.uid = Number.parseInt(hex(3), 16)),
    retime: (p) => (p.tstamp = nowSec()),
  },
  improvmx: {
    fixture: (type) => type ?? "sample",
    fresh: (p) => (p["message-id"] = `<${hex(8)}@mailhook.test>`),
    retime: (p) => (p.timestamp = nowSec()),
  },
  "mail-plus": {
    fixture: (type) => type ?? "sample",
    fresh(p) {
      p.header = { ...(typeof p.header === "object" ? p.header : {}), "Message-ID": `<${hex(8)}@mailhook.test>` };
    },
    retime: (p) => (p.timestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z")),
  },
  "email-routing": {
    fixture: (type) => type ?? "plain",
    // Raw mail (.eml), handed to the Worker's `email` handler as Email Routing does.
    mail: true,
    fresh: (raw) => Buffer.from(raw.toString("latin1").replace(/^Message-ID:.*$/im, `Message-ID: <${hex(8)}@mailhook.test>`), "latin1"),
  },
};

/** The sources the CLI can send as: one entry of BUILD each (a test checks them against the Worker's registry). */
const PROVIDERS = Object.keys(BUILD);

/**
 * The registry of sources (build/registry.json, which the build writes from
 * `cargo run --example registry`): how each source authenticates.
 */
function registry() {
  const file = path.join(root, "build", "registry.json");
  if (!existsSync(file)) fail("build/registry.json is missing: run `npm run build` (npm start does) first");
  return JSON.parse(readFileSync(file, "utf8"));
}

/** The first address of an allow-list variable as configured locally (environment, .dev.vars, wrangler.toml). */
function firstAllowed(variable) {
  const toml = readFileSync(path.join(root, "wrangler.toml"), "utf8").match(new RegExp(`^${variable} = "([^"]*)"`, "m"))?.[1];
  const list = process.env[variable] ?? devVars[variable] ?? toml ?? "";
  return list.split(",").map((s) => s.trim().split("/")[0]).find(Boolean);
}

/** Headers that authenticate `body` exactly as the provider does, as its registry entry says. */
function authenticate(provider, body, ip) {
  const { auth } = registry().sources.find((s) => s.name === provider) ?? fail(`${provider} is not in build/registry.json; rebuild`);
  const need = (name) => secret(name) ?? fail(`${name} is not set in the environment or .dev.vars`);
  const h = { "content-type": "application/json" };
  if (auth.kind === "signed_body") h[auth.header.toLowerCase()] = createHmac("sha256", need(auth.secret)).update(body).digest("hex");
  if (auth.kind === "token") h[auth.header.toLowerCase()] = need(auth.secret);
  // A source recognised by its address: locally, the address can be set.
  if (auth.kind === "source_address") h["cf-connecting-ip"] = ip ?? firstAllowed(auth.allow_list) ?? "127.0.0.1";
  return h;
}

async function send(args) {
  const options = { type: { type: "string" }, url: { type: "string" }, ip: { type: "string" }, from: { type: "string" }, to: { type: "string" } };
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options });
  const [provider, fixtureName] = positionals;
  if (!PROVIDERS.includes(provider)) fail(`send <provider>: one of ${PROVIDERS.join(", ")}`);
  const b = BUILD[provider];
  if (b.mail) return sendMail(provider, b, fixtureName, values);
  const payload = loadFixture(provider, fixtureName ?? b.fixture(values.type));
  // A named fixture keeps its identity (send it twice: a duplicate); a built one is new each time.
  if (!fixtureName) b.fresh(payload);
  if (!fixtureName && values.type && provider === "maileroo") payload.event_type = values.type;
  if (!fixtureName && values.type && provider === "mailtura") payload.type = `email.${values.type.replace(/^email\./, "")}`;
  // Signed providers' events must be recent (MAX_EVENT_AGE_SECONDS); their identity is their id, not their time.
  if (!fixtureName || provider === "maileroo" || provider === "mailtura") b.retime(payload);
  const body = JSON.stringify(payload);
  const url = `${base(values)}/webhooks/${provider}`;
  const res = await request(url, { method: "POST", headers: authenticate(provider, body, values.ip), body });
  console.log(`${res.status} ${JSON.stringify(res.json ?? res.text)}`);
  if (res.status !== 200) process.exit(1);
}

/**
 * Hands raw mail to the `email` handler through `wrangler dev`'s local
 * endpoint (locally at most 1 MiB, and a Message-ID is required). A fixture
 * named keeps its Message-ID (send it twice: a duplicate); the default one gets a new one.
 */
async function sendMail(provider, b, fixtureName, values) {
  let raw = loadFixture(provider, fixtureName ?? b.fixture(values.type), "eml");
  if (!fixtureName) raw = b.fresh(raw);
  const q = new URLSearchParams({ from: values.from ?? "sender@example.net", to: values.to ?? "inbox@mailhook.test" });
  const res = await request(`${base(values)}/cdn-cgi/handler/email?${q}`, { method: "POST", body: raw });
  // 200: taken. 400: refused for good (setReject: the sender gets a bounce). 500: refused for now (the sender retries).
  const meaning = { 200: "taken", 400: "rejected (permanent)", 500: "deferred (temporary; the sender would retry)" }[res.status] ?? "";
  console.log(`${res.status} ${meaning} ${res.text ?? ""}`.trim());
  if (res.status !== 200) process.exit(1);
}

function base(values) {
  return (values.url ?? process.env.MAILHOOK_URL ?? "http://127.0.0.1:8787").replace(/\/$/, "");
}

async function request(url, init) {
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    fail(`cannot reach ${url}: ${e.cause?.code ?? e.message}. Is mailhook running (npm start)?`);
  }
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

async function admin(values, pathAndQuery, method = "GET") {
  const token = secret("ADMIN_TOKEN") ?? fail("ADMIN_TOKEN is not set in the environment or .dev.vars");
  const res = await request(`${base(values)}${pathAndQuery}`, { method, headers: { authorization: `Bearer ${token}` } });
  if (res.status >= 300) fail(`${method} ${pathAndQuery}: ${res.status} ${res.json?.error?.message ?? res.text}`);
  return res.json;
}

const FILTERS = ["from", "to", "provider", "type", "status", "destination", "thread"];
const filterQuery = (values) => FILTERS.filter((f) => values[f]).map((f) => `${f}=${encodeURIComponent(values[f])}`);

const CSV_COLUMNS = ["id", "provider", "type", "received_at", "status", "attempts", "last_status", "last_error", "payload_ref", "updated_at", "deliveries"];
/** The deliveries column: `name:status:attempts` per destination, space-separated. */
const cell = (e, c) => (c === "deliveries" ? (e.deliveries ?? []).map((d) => `${d.destination}:${d.status}:${d.attempts}`).join(" ") : e[c]);
const csvCell = (v) => (v === null || v === undefined ? "" : /[",\n\r]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));

async function exportEvents(args) {
  const opts = Object.fromEntries([...FILTERS, "limit", "page", "format", "url"].map((o) => [o, { type: "string" }]));
  const { values } = parseArgs({ args, options: opts });
  const format = values.format ?? "jsonl";
  if (!["jsonl", "csv"].includes(format)) fail("--format is jsonl or csv");
  const limit = values.limit === undefined ? Infinity : Number(values.limit);
  if (!(limit >= 1)) fail("--limit takes a number of events, 1 or more");
  if (values.page !== undefined && !(Number(values.page) >= 1 && limit <= 1000)) fail("--page takes 1 or more, with a --limit of at most 1000 (the page size)");
  const out = (line) => process.stdout.write(line + "\n");
  if (format === "csv") out(CSV_COLUMNS.join(","));
  // --page: one page of --limit events; otherwise every page until --limit events.
  let page = Number(values.page ?? 1);
  const size = Math.min(limit, 1000);
  let written = 0;
  for (;;) {
    const want = Math.min(size, limit - written);
    const q = [...filterQuery(values), `limit=${want}`, `page=${page}`].join("&");
    const res = await admin(values, `/admin/events?${q}`);
    for (const e of res.events) out(format === "csv" ? CSV_COLUMNS.map((c) => csvCell(cell(e, c))).join(",") : JSON.stringify(e));
    written += res.events.length;
    const goal = Math.min(limit, res.total);
    if (goal > size) process.stderr.write(`exported ${written}/${goal}\n`);
    if (values.page !== undefined || res.events.length < want || written >= limit) break;
    page += 1;
  }
}

async function replay(args) {
  const options = { dead: { type: "boolean" }, unrouted: { type: "boolean" }, from: { type: "string" }, to: { type: "string" }, destination: { type: "string" }, url: { type: "string" } };
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options });
  const status = values.unrouted ? "unrouted" : values.dead ? "dead" : undefined;
  if (positionals[0] && !status) {
    const to = values.destination ? `?destination=${encodeURIComponent(values.destination)}` : "";
    const res = await admin(values, `/admin/events/${encodeURIComponent(positionals[0])}/replay${to}`, "POST");
    console.log(JSON.stringify(res));
    return;
  }
  if (!status) fail("replay <id> [--destination NAME] | --dead|--unrouted [--destination NAME] [--from D] [--to D]");
  let total = 0;
  // --unrouted: the unrouted events that a destination takes now. Only what was dead when the command started, by the Worker's clock: the first answer says
  // which cut-off it used, and the later rounds pass it back, so a replay that fails again is not picked again.
  let before;
  for (let round = 0; round < 1000; round++) {
    const filters = [...filterQuery({ from: values.from, to: values.to, destination: values.destination }), ...(before ? [`before=${encodeURIComponent(before)}`] : [])];
    const res = await admin(values, `/admin/replay?${[`status=${status}`, ...filters, "limit=1000"].join("&")}`, "POST");
    before ??= res.before;
    total += res.count;
    if (res.count > 0) process.stderr.write(`replayed ${total}\n`);
    if (res.count === 0 || res.remaining === 0) break;
  }
  console.log(JSON.stringify({ status: "replayed", count: total }));
}

async function destinations(args) {
  const { values } = parseArgs({ args, options: { url: { type: "string" }, json: { type: "boolean" } } });
  const res = await admin(values, "/admin/destinations");
  if (values.json) return console.log(JSON.stringify(res, null, 2));
  for (const d of res.destinations) {
    const counts = Object.entries(d.deliveries).map(([s, n]) => `${s} ${n}`).join(", ") || "no deliveries yet";
    const circuit = d.circuit.state === "open" ? `OPEN since ${d.circuit.opened_at}, next probe ${d.circuit.next_probe}` : `closed (${d.circuit.failures} failures in a row)`;
    const tags = d.filter.recipient_tags ? [`recipient tags ${d.filter.recipient_tags.join("|")}`] : [];
    const filter = [d.filter.providers?.join("|") ?? "every provider", d.filter.types?.join("|") ?? "every type", ...tags].join(" / ");
    const links = d.attachments === "link" ? "as links" : d.max_body_bytes ? `as links in events over ${d.max_body_bytes} bytes` : "in the event";
    console.log(`${d.name}  ${d.url}\n  takes: ${filter}\n  ${d.transform ? `transform: ${d.transform}` : `format: ${d.format}`}, attachments: ${links}\n  circuit: ${circuit}\n  deliveries: ${counts}${d.problem ? `\n  problem: ${d.problem}` : ""}`);
  }
}

/** The canonical event a fixture name or file stands for: `mailtura/bounced` is fixtures/mailtura/bounced.expected.json. */
function canonicalEvent(what) {
  if (existsSync(what)) return readFileSync(what, "utf8");
  const [provider, name] = what.split("/");
  const file = path.join(root, "fixtures", provider ?? "", `${name ?? ""}.expected.json`);
  if (!name || !existsSync(file)) fail(`no event ${what}: give an event id (evt_…), <provider>/<fixture> (see fixtures/*/*.expected.json), or a JSON file`);
  return readFileSync(file, "utf8");
}

async function transform(args) {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { url: { type: "string" }, json: { type: "boolean" } } });
  const [dest, what = "mailtura/bounced"] = positionals;
  if (!dest) fail("transform <destination> [<event id> | <provider>/<fixture> | file.json]");
  let shown;
  if (/^evt_[A-Za-z0-9_-]+$/.test(what) && !existsSync(what)) {
    const res = await admin(values, `/admin/events/${encodeURIComponent(what)}/bodies`);
    shown = res.bodies.find((b) => b.destination === dest.toLowerCase());
    if (!shown) fail(`destination ${dest} does not take ${what} (or does not exist); it goes to: ${res.bodies.map((b) => b.destination).join(", ") || "none"}`);
  } else {
    const token = secret("ADMIN_TOKEN") ?? fail("ADMIN_TOKEN is not set in the environment or .dev.vars");
    const res = await request(`${base(values)}/admin/destinations/${encodeURIComponent(dest)}/preview`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: canonicalEvent(what),
    });
    if (res.status >= 300) fail(`${dest}: ${res.status} ${res.json?.error?.message ?? res.text}`);
    shown = res.json;
  }
  if (values.json) return console.log(JSON.stringify(shown, null, 2));
  if (shown.error) fail(`${shown.destination} would record this delivery as dead: ${shown.error}`);
  if (shown.filtered) return console.log(`${shown.destination}: filtered (its transform gives null or nothing; not sent)`);
  const headers = Object.entries(shown.headers ?? {}).map(([k, v]) => `${k}: ${v}\n`).join("");
  let body = shown.body;
  try { body = JSON.stringify(JSON.parse(body), null, 2); } catch { /* not JSON, or cut short: as it is */ }
  console.log(`content-type: ${shown.content_type}\n${headers}\n${body}${shown.truncated ? `\n… (${shown.bytes} bytes in all)` : ""}`);
}

/**
 * Checks a running mailhook (local, or deployed with --url): /healthz (the configuration), then, with ADMIN_TOKEN,
 * GET /admin/doctor (migrations, circuits, dead letters, providers, ALERT_URL). Exits 1 when anything is an error.
 */
async function doctor(args) {
  const { values } = parseArgs({ args, options: { url: { type: "string" } } });
  const health = await request(`${base(values)}/healthz`);
  if (health.status !== 200) {
    console.log(`error: /healthz answers ${health.status}: ${health.json?.error ?? health.text}`);
    console.log("  fix: set what it names (wrangler.toml [vars], or `npx wrangler secret put NAME`), then deploy again");
    process.exit(1);
  }
  console.log(`mailhook ${health.json.version} at ${base(values)}: /healthz answers 200`);
  const token = secret("ADMIN_TOKEN");
  if (!token) {
    for (const w of health.json.warnings ?? []) console.log(`warning: ${w}`);
    console.log("set ADMIN_TOKEN (environment or .dev.vars) to check migrations, circuits and dead letters too");
    return;
  }
  const res = await admin(values, "/admin/doctor");
  for (const f of res.findings) console.log(`${f.level}: ${f.what}\n  fix: ${f.fix}`);
  const errors = res.findings.filter((f) => f.level === "error").length;
  console.log(errors ? `${errors} error(s)` : res.findings.length ? "no errors" : "nothing to fix");
  if (errors) process.exit(1);
}

const [command, ...rest] = process.argv.slice(2);
const connect = (args) => connectCommand(args, secret);
const disconnect = (args) => connectCommand(args, secret, { disconnect: true });
const commands = { send, export: exportEvents, replay, destinations, transform, doctor, connect, disconnect };
if (!commands[command]) {
  console.error("usage: npm run mailhook -- send <provider> [fixture | --type TYPE] | export [--from --to --limit --page --format jsonl|csv --destination NAME] | replay <id> [--destination NAME] | replay --dead|--unrouted [--destination NAME --from --to] | destinations | doctor | transform <destination> [<id> | <provider>/<fixture> | file.json] | connect <provider> | disconnect mailtura");
  process.exit(2);
}
await commands[command](rest);
