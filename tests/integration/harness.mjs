// The one harness of the integration tests: starts the built Worker in workerd
// through Miniflare with real local KV, Queues and R2, configured from
// wrangler.toml (overrides per test), and a real HTTP origin on 127.0.0.1
// whose deliveries are verified with the `standardwebhooks` package.
import { execFileSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Log, LogLevel, Miniflare } from "miniflare";
import { parse as parseToml } from "smol-toml";
import { CloudEvent } from "cloudevents";
import { Webhook } from "standardwebhooks";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const wrangler = parseToml(readFileSync(path.join(root, "wrangler.toml"), "utf8"));

/** The secrets of the test instance (the values of .dev.vars.example's names). */
export const SECRETS = {
  ADM_TOOLS_WEBHOOK_TOKEN: "it-adm-tools-token",
  MAILTURA_WEBHOOK_SECRET: "it-mailtura-secret",
  MAILEROO_WEBHOOK_SECRET: "it-maileroo-secret",
  ORIGIN_SIGNING_SECRET: "whsec_" + Buffer.from("integration-test-origin-key").toString("base64"),
  ADMIN_TOKEN: "it-admin-token",
};

/** A fixture's bytes: a JSON payload, or raw mail (`.eml`) for mail the platform hands over. */
export function fixture(provider, name) {
  const dir = path.join(root, "fixtures", provider);
  const json = path.join(dir, `${name}.json`);
  return readFileSync(existsSync(json) ? json : path.join(dir, `${name}.eml`));
}

/** Debian's chromium, which playwright-core drives (scripts/browser.sh installs it). */
export function chromiumPath() {
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("chromium is not installed: run `bash scripts/browser.sh` (npm test does)");
  }
}

/** A TCP port free on 127.0.0.1 now. */
export async function freePort() {
  const server = createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value, or fails after `ms`. */
export async function waitFor(check, { ms = 15000, what = "condition" } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The optional CloudEvents attributes: present only as non-empty strings (CONTRACT §4). */
const OPTIONAL_ATTRIBUTES = ["time", "subject", "datacontenttype", "dataschema"];

/**
 * Why `event` (parsed JSON) is not a valid CloudEvent for the official SDK, or
 * null. The JS SDK silently replaces a null `time` with the current time and
 * lets a null `subject` through, where the Python SDK refuses both, so nulls
 * are checked here first; then the SDK's own strict validation runs.
 */
export function cloudEventProblem(event) {
  for (const a of OPTIONAL_ATTRIBUTES) {
    if (a in event && (typeof event[a] !== "string" || event[a] === "")) return `${a} is ${JSON.stringify(event[a])}`;
  }
  try {
    const ce = new CloudEvent(event, true);
    for (const a of ["id", "source", "type", "specversion", ...OPTIONAL_ATTRIBUTES]) {
      if (event[a] !== undefined && ce[a] !== event[a]) return `${a} changed in the SDK: ${event[a]} → ${ce[a]}`;
    }
  } catch (e) {
    return `${e.message ?? e} ${JSON.stringify(e.errors ?? "")}`;
  }
  return null;
}

/**
 * A real origin on 127.0.0.1. `respond(delivery, n)` decides each answer
 * (default 204): return a status, or `{ status, headers, hang }`.
 * Every delivery is verified (signature, and a valid CloudEvent); `deliveries`
 * holds the verified ones, `invalid` the others (answered 400).
 */
export async function startOrigin({ secret = SECRETS.ORIGIN_SIGNING_SECRET, respond } = {}) {
  const verifier = new Webhook(secret);
  const origin = { deliveries: [], attempts: [], invalid: [] };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      let event;
      try {
        event = verifier.verify(body, headers);
      } catch (e) {
        origin.invalid.push({ headers, body, error: String(e) });
        res.writeHead(400).end("bad signature");
        return;
      }
      const problem = cloudEventProblem(event);
      if (problem) {
        origin.invalid.push({ headers, body, error: `not a valid CloudEvent: ${problem}` });
        res.writeHead(400).end("not a CloudEvent");
        return;
      }
      const delivery = { id: headers["webhook-id"], headers, body, event, at: Date.now() };
      origin.attempts.push(delivery);
      let answer = respond ? await respond(delivery, origin.attempts.length) : 204;
      if (typeof answer === "number") answer = { status: answer };
      if (answer.hang) return; // never answer: the Worker's timeout must fire
      if (answer.status >= 200 && answer.status < 300) origin.deliveries.push(delivery);
      res.writeHead(answer.status, answer.headers ?? {}).end();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  origin.url = `http://127.0.0.1:${server.address().port}/events`;
  origin.server = server;
  origin.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); });
  return origin;
}

/** An origin that keeps every request as it came (any body, not only CloudEvents), once its signature verifies. */
export async function rawOrigin(secret) {
  const verifier = new Webhook(secret);
  const got = { requests: [], invalid: [] };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      try {
        verifier.verify(body, headers);
      } catch (e) {
        // The library parses what it verified as JSON: a body that is not (a raw message) is checked by its signature.
        const signed = e instanceof SyntaxError &&
          headers["webhook-signature"]?.split(" ").includes(verifier.sign(headers["webhook-id"], new Date(Number(headers["webhook-timestamp"]) * 1000), body));
        if (!signed) {
          got.invalid.push(String(e));
          res.writeHead(400).end();
          return;
        }
      }
      got.requests.push({ headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  got.url = `http://127.0.0.1:${server.address().port}/hook`;
  got.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); });
  return got;
}

/**
 * Starts mailhook. `vars` override wrangler.toml's [vars]; `secrets` override
 * SECRETS (a value of undefined removes it); `without` drops bindings by name;
 * `persist` keeps KV, R2 and D1 in a folder across instances. `ratelimits`: true binds
 * wrangler.toml's [[ratelimits]], an object overrides their limits by name ({ ADMIN_RATE_LIMIT: 5 });
 * without it there are none, so that tests that poll the admin API are not counted. `batch`
 * ({ size, timeout }) overrides the consumers' max_batch_size and max_batch_timeout (the soak compares them).
 * `listen` serves it on 127.0.0.1, on `port` when given (`freePort`; its PUBLIC_URL can then be known in advance).
 */
export async function startMailhook({ vars = {}, secrets = {}, without = [], listen = false, port = 0, consumers: withConsumers = true, inspectorPort, persist, ratelimits, driver = false, batch } = {}) {
  // Short retries, and a circuit breaker that stays out of the way unless a test sets it.
  const bindings = { ...wrangler.vars, RETRY_SCHEDULE_SECONDS: "1,1,1", CIRCUIT_FAILURES: "1000", ...SECRETS, ...secrets, ...vars };
  for (const [k, v] of Object.entries(bindings)) if (v === undefined) delete bindings[k];
  const keep = (list, name) => !without.includes(name);
  const producers = Object.fromEntries(
    wrangler.queues.producers.filter((p) => keep(0, p.binding)).map((p) => [p.binding, { queueName: p.queue }]),
  );
  const consumers = Object.fromEntries(
    wrangler.queues.consumers.map((c) => [
      c.queue,
      {
        maxBatchSize: batch?.size ?? c.max_batch_size,
        maxBatchTimeout: batch?.timeout ?? c.max_batch_timeout,
        maxRetries: c.max_retries,
        retryDelay: Math.min(c.retry_delay ?? 0, 1),
        deadLetterQueue: c.dead_letter_queue,
      },
    ]),
  );
  const logs = [];
  // Miniflare's own log (what the email handler's forward and setReject print locally), kept beside the Worker's.
  const log = new (class extends Log {
    log(message) {
      logs.push(String(message).replace(/\x1b\[[0-9;]*m/g, ""));
    }
  })(LogLevel.INFO);
  const worker = {
    name: "mailhook",
    rootPath: root,
    modules: true,
    scriptPath: path.join(root, wrangler.main),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }, { type: "ESModule", include: ["**/*.js", "**/*.mjs"] }],
    compatibilityDate: wrangler.compatibility_date,
    kvNamespaces: wrangler.kv_namespaces.map((k) => k.binding).filter((b) => keep(0, b)),
    r2Buckets: wrangler.r2_buckets.map((b) => b.binding).filter((b) => keep(0, b)),
    d1Databases: wrangler.d1_databases.map((d) => d.binding),
    ratelimits: ratelimits
      ? Object.fromEntries(
          wrangler.ratelimits.map((r) => [r.name, { simple: { limit: ratelimits[r.name] ?? r.simple.limit, period: r.simple.period } }]),
        )
      : {},
    queueProducers: producers,
    queueConsumers: withConsumers ? consumers : {},
    bindings,
  };
  const options = {
    log,
    // `POST /cdn-cgi/handler/email?from=&to=` hands raw mail to the `email` handler, as `wrangler dev` does.
    unsafeTriggerHandlers: true,
    ...(listen ? { host: "127.0.0.1", port } : {}),
    ...(inspectorPort ? { inspectorPort } : {}),
    // `persist`: a folder that keeps KV, R2 and D1 from one instance to the next.
    ...(persist ? { kvPersist: `${persist}/kv`, r2Persist: `${persist}/r2`, d1Persist: `${persist}/d1` } : {}),
    handleRuntimeStdio(stdout, stderr) {
      for (const s of [stdout, stderr]) s.on("data", (d) => logs.push(...String(d).split("\n").filter(Boolean)));
    },
    workers: [worker, ...(driver ? [DRIVER] : [])],
  };
  const mf = new Miniflare(options);
  const url = await mf.ready;
  await applyMigrations(await mf.getD1Database("DB"));
  const base = "http://127.0.0.1/";
  return {
    mf,
    logs,
    /** The listening URL, with `listen: true`. */
    url: listen ? url.toString().replace(/\/$/, "") : undefined,
    /** POSTs `body` to /webhooks/{provider}, returns { status, headers, json }. */
    async post(provider, body, headers = {}) {
      return call(mf, `${base}webhooks/${provider}`, { method: "POST", body, headers });
    },
    /**
     * With `driver`: hands raw mail to the `email` handler itself, as the platform does, without the
     * local endpoint's checks (it refuses mail over 1 MiB or without a Message-ID before the handler runs):
     * { rejected: the reason given to setReject, or null; error: what the handler threw, or null }.
     */
    async emailDirect(raw, { from = "sender@example.net", to = "inbox@mailhook.test" } = {}) {
      const res = await (await mf.getWorker("driver")).fetch(`http://driver/?${new URLSearchParams({ from, to })}`, { method: "POST", body: raw });
      return res.json();
    },
    /** Hands raw mail to the Worker's `email` handler, as Email Routing does: { status, text }. */
    async email(raw, { from = "sender@example.net", to = "inbox@mailhook.test" } = {}) {
      const q = new URLSearchParams({ from, to });
      return call(mf, `${base}cdn-cgi/handler/email?${q}`, { method: "POST", body: raw });
    },
    async request(pathname, init = {}) {
      return call(mf, base + pathname.replace(/^\//, ""), init);
    },
    kv: () => mf.getKVNamespace("DEDUPE"),
    db: () => mf.getD1Database("DB"),
    /** The dead letters: event-log rows with status 'dead'. */
    async deadLetters() {
      const db = await mf.getD1Database("DB");
      return (await db.prepare("SELECT * FROM events WHERE status = 'dead' ORDER BY updated_at").all()).results;
    },
    /** The deliveries (one row per event and destination), optionally of one destination. */
    async deliveries(destination) {
      const db = await mf.getD1Database("DB");
      // With the deliveries kept in their events' rows (migrations/0009_two_rows.sql), as `admin::delivery_rows` reads them.
      const columns = "event_id, destination, status, attempts, last_status, last_error, updated_at";
      const sql =
        `SELECT * FROM (SELECT ${columns} FROM deliveries UNION ALL ` +
        "SELECT id, ok_destination, 'delivered', 1, first_ok_status, NULL, first_ok_ms / 1000 FROM events e WHERE ok_destination IS NOT NULL " +
        "AND NOT EXISTS (SELECT 1 FROM deliveries x WHERE x.event_id = e.id AND x.destination = e.ok_destination))" +
        (destination ? " WHERE destination = ?1" : "") +
        " ORDER BY updated_at";
      return (await (destination ? db.prepare(sql).bind(destination) : db.prepare(sql)).all()).results;
    },
    /** Runs the cron trigger (the retention job) once. */
    async scheduled() {
      const worker = await mf.getWorker();
      return worker.scheduled({ cron: wrangler.triggers.crons[0] });
    },
    /** Runs the minute cron (alerts) once. */
    async alerts() {
      const worker = await mf.getWorker();
      return worker.scheduled({ cron: "* * * * *" });
    },
    /** GET/POST an admin endpoint with the bearer token. */
    async admin(pathname, { method = "GET", token = SECRETS.ADMIN_TOKEN } = {}) {
      const headers = token === null ? {} : { authorization: `Bearer ${token}` };
      return call(mf, base + pathname.replace(/^\//, ""), { method, headers });
    },
    r2: () => mf.getR2Bucket("PAYLOADS"),
    dispose: () => mf.dispose(),
    /** Sets secrets as `wrangler secret put` does: a new version of the Worker (give `port` and `persist` to keep both). */
    async setSecrets(values) {
      Object.assign(worker.bindings, values);
      await mf.setOptions(options);
    },
  };
}

/**
 * A second Worker that calls mailhook's `email` handler over a service binding with a message as the
 * platform makes it (from, to, raw, rawSize, headers, setReject, forward, reply), as Miniflare's own endpoint does.
 */
const DRIVER = {
  name: "driver",
  modules: true,
  compatibilityDate: wrangler.compatibility_date,
  serviceBindings: { MAILHOOK: "mailhook" },
  script: `export default {
    async fetch(request, env) {
      const q = new URL(request.url).searchParams;
      const raw = new Uint8Array(await request.arrayBuffer());
      let rejected = null;
      let error = null;
      try {
        await env.MAILHOOK.email({
          from: q.get("from"),
          to: q.get("to"),
          raw: new Response(raw).body,
          rawSize: raw.byteLength,
          headers: new Headers(),
          setReject: (reason) => { rejected = reason; },
          forward: async () => ({}),
          reply: async () => ({}),
        });
      } catch (e) {
        error = String(e && e.message || e);
      }
      return Response.json({ rejected, error });
    },
  };`,
};

/** Applies migrations/*.sql in order, each once (recorded in d1_migrations), as `wrangler d1 migrations apply` does. */
export async function applyMigrations(db) {
  const dir = path.join(root, "migrations");
  await db.prepare("CREATE TABLE IF NOT EXISTS d1_migrations (name TEXT PRIMARY KEY)").run();
  const applied = new Set((await db.prepare("SELECT name FROM d1_migrations").all()).results.map((r) => r.name));
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".sql")).sort()) {
    if (applied.has(file)) continue;
    const sql = readFileSync(path.join(dir, file), "utf8").replace(/^\s*--.*$/gm, "");
    const statements = sql.split(/;\s*$/m).map((s) => s.trim()).filter(Boolean);
    await db.batch([...statements.map((s) => db.prepare(s)), db.prepare("INSERT INTO d1_migrations (name) VALUES (?1)").bind(file)]);
  }
}

async function call(mf, url, init) {
  const res = await mf.dispatchFetch(url, init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * The registry of sources (build/registry.json, written by the build from
 * `cargo run --example registry`): how each one authenticates, from which the
 * headers below are derived.
 */
export const registry = JSON.parse(readFileSync(path.join(root, "build/registry.json"), "utf8"));
const source = (name) => registry.sources.find((s) => s.name === name) ?? (() => { throw new Error(`no source ${name} in the registry`); })();

/** Hex HMAC-SHA256 of the raw body, as the signed sources sign. */
export function hexHmac(secret, body) {
  return createHmac("sha256", secret).update(body).digest("hex");
}

/**
 * The headers with which `provider` authenticates `body`, as its registry
 * entry says: a signature of the body, a token, or (the source address) its
 * `CF-Connecting-IP`. `secret` overrides the test instance's value.
 */
export function authHeaders(provider, body, { secret, ip } = {}) {
  const { auth } = source(provider);
  const headers = { "content-type": "application/json" };
  const value = secret ?? SECRETS[auth.secret];
  if (auth.kind === "signed_body") headers[auth.header.toLowerCase()] = hexHmac(value, body);
  if (auth.kind === "token") headers[auth.header.toLowerCase()] = value;
  if (auth.kind === "source_address" && ip) headers["cf-connecting-ip"] = ip;
  return headers;
}

/** Headers adm.tools sends: its token (any `token`), as it names it in the registry, and its user agent. */
export function admHeaders(token = SECRETS.ADM_TOOLS_WEBHOOK_TOKEN) {
  return { ...authHeaders("adm-tools", "", { secret: token }), "user-agent": "adm.tools mail webhook" };
}

/** Each signed source's headers for a body: `signedHeaders.maileroo(body[, secret])`. */
export const signedHeaders = Object.fromEntries(
  registry.sources.filter((s) => s.auth.kind === "signed_body").map((s) => [s.name, (body, secret) => authHeaders(s.name, body, { secret })]),
);

/**
 * A DNS-over-HTTPS server (JSON API) on 127.0.0.1. `records` maps a name to
 * `{ PTR: [...], A: [...], AAAA: [...] }`; `fail` names answer HTTP 500.
 * `queries` lists what was asked, as "NAME TYPE".
 */
export async function startDoh(records, { fail = [] } = {}) {
  const types = { A: 1, PTR: 12, AAAA: 28 };
  const doh = { queries: [] };
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    const name = url.searchParams.get("name");
    const type = url.searchParams.get("type");
    doh.queries.push(`${name} ${type}`);
    if (fail.includes(name)) return res.writeHead(500).end();
    const data = records[name]?.[type] ?? [];
    const body = {
      Status: records[name] ? 0 : 3,
      Answer: data.map((d) => ({ name: `${name}.`, type: types[type], TTL: 300, data: type === "PTR" ? `${d}.` : d })),
    };
    res.writeHead(200, { "content-type": "application/dns-json" }).end(JSON.stringify(body));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  doh.url = `http://127.0.0.1:${server.address().port}/dns-query`;
  doh.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); });
  return doh;
}

/** The PTR name of an IPv4 or (fully written) IPv6 address. */
export function ptrName(ip) {
  if (ip.includes(".")) return ip.split(".").reverse().join(".") + ".in-addr.arpa";
  const full = ip.split("::").length === 2
    ? (() => { const [a, b] = ip.split("::"); const l = a ? a.split(":") : [], r = b ? b.split(":") : []; return [...l, ...Array(8 - l.length - r.length).fill("0"), ...r]; })()
    : ip.split(":");
  return full.map((g) => g.padStart(4, "0")).join("").split("").reverse().join(".") + ".ip6.arpa";
}
