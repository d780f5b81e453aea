// `npm run mailhook -- connect NAME` and `disconnect mailtura`: a provider's side of the connection.
//
//   connect mailtura --api URL --key KEY [--tenant ID] [--events delivered,bounced,…]
//       creates Mailtura's webhook to mailhook with a generated secret, stores the secret with `wrangler secret
//       put`, sends Mailtura's test event, waits until it is in mailhook's event log, then deletes any older
//       webhook to this mailhook (it signs with a secret mailhook no longer has). The key may come from
//       MAILTURA_API_KEY instead of --key.
//   disconnect mailtura --api URL --key KEY [--tenant ID]
//       deletes Mailtura's webhooks to mailhook and the secret
//   connect NAME        the other sources, which have no such API (and Mailtura without --api): the exact steps and
//                       values, then the wait
//
// Options: --url (mailhook's address; default: the one `npm run deploy` printed), --config (wrangler.toml),
// --wait SECONDS (how long to wait for the test event: 120 for Mailtura, 600 for the others).
// The wait reads the admin API with ADMIN_TOKEN (the environment; for a local mailhook, else .dev.vars).
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ask, done } from "./cloudflare/ask.mjs";
import { provider, PROVIDERS } from "./cloudflare/providers.mjs";
import { putSecret, wrangler, said } from "./cloudflare/wrangler.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MAILTURA_EVENTS = ["sent", "delivered", "opened", "clicked", "bounced", "complained", "failed"];

class Refused extends Error {}

function options(args) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        api: { type: "string" },
        key: { type: "string" },
        tenant: { type: "string" },
        events: { type: "string" },
        url: { type: "string" },
        config: { type: "string" },
        wait: { type: "string" },
      },
    });
  } catch (e) {
    throw new Refused(e.message);
  }
}

/** mailhook's address: --url, else what `npm run deploy` recorded beside the configuration. */
function mailhookUrl(values) {
  if (values.url) return values.url.replace(/\/+$/, "");
  const file = path.join(path.dirname(path.resolve(values.config ?? path.join(root, "wrangler.toml"))), ".wrangler", "mailhook-deployed.json");
  if (existsSync(file)) {
    let url;
    try {
      url = JSON.parse(readFileSync(file, "utf8")).url;
    } catch {}
    if (typeof url === "string" && /^https?:\/\//.test(url)) return url.replace(/\/+$/, "");
    throw new Refused(`${file} does not hold mailhook's address: run npm run deploy again (it writes it), or pass --url`);
  }
  throw new Refused("mailhook's address is unknown: run npm run deploy first (it records it), or pass --url https://<your worker>");
}

/** The wait needs the admin API: checked before anything is changed at the provider. */
async function checkMailhook(url, token) {
  if (!token) {
    throw new Refused(
      "ADMIN_TOKEN is not set in the environment: export the one npm run deploy showed (ADMIN_TOKEN=… npm run mailhook -- connect …), so that the test event can be looked for; " +
        "if the console was declined, npm run deploy -- --rotate ADMIN_TOKEN makes one",
    );
  }
  let res;
  try {
    res = await fetch(`${url}/admin/events?limit=1`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) });
  } catch (e) {
    throw new Refused(`${url} does not answer (${e.cause?.code ?? e.message}): check the address, or run npm run mailhook -- doctor --url ${url}`);
  }
  if (res.status === 401 || res.status === 403) throw new Refused(`${url}/admin refuses ADMIN_TOKEN (${res.status}): use the token set on that Worker`);
  if (res.status !== 200) throw new Refused(`${url}/admin/events answers ${res.status}: run npm run mailhook -- doctor --url ${url}`);
}

/** The newest events of `source` in the log, or null when the admin API does not answer. */
const newest = async (url, token, source) => {
  const res = await fetch(`${url}/admin/events?provider=${source}&limit=20`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) }).catch(() => null);
  return res?.ok ? ((await res.json().catch(() => ({}))).events ?? null) : null;
};

/** What is in the log of `source` now: the events a wait does not count. */
async function seenNow(url, token, source) {
  const events = await newest(url, token, source);
  if (!events) throw new Refused(`${url}/admin/events could not be read, so a new event could not be told from an old one: run npm run mailhook -- doctor --url ${url}`);
  return new Set(events.map((e) => e.id));
}

/** Polls the event log until an event of `source` (of `type`, if given) not in `seen` is there: its row, or null at the deadline. */
async function waitForEvent(url, token, source, { seen, seconds, type, nudge }) {
  const deadline = Date.now() + seconds * 1000;
  let nudged = Date.now();
  while (Date.now() < deadline) {
    const event = ((await newest(url, token, source)) ?? []).find((e) => !seen.has(e.id) && (!type || e.type === type));
    if (event) return event;
    // A secret just stored takes a few seconds to reach every location: the test event is sent again meanwhile.
    if (nudge && Date.now() - nudged > 15_000) {
      nudged = Date.now();
      await nudge();
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  return null;
}

/** Mailtura's API, as its documentation gives it (../shared/providers/mailtura.txt). */
function mailtura(values, secrets = []) {
  const key = values.key ?? process.env.MAILTURA_API_KEY;
  if (!values.api || !key) throw new Refused("connect mailtura needs --api https://<your Mailtura instance> and its API key (--key, or MAILTURA_API_KEY in the environment, out of your shell's history), and --tenant <id> when your account has tenants");
  const api = values.api.replace(/\/+$/, "");
  const redact = (text) => secrets.reduce((t, s) => t.replaceAll(s, "<secret>"), text.replaceAll(key, "<key>"));
  return async (method, pathname, body) => {
    const headers = { authorization: `Bearer ${key}`, ...(values.tenant ? { "x-tenant-id": values.tenant } : {}), ...(body ? { "content-type": "application/json" } : {}) };
    let res;
    try {
      res = await fetch(`${api}/api/v1${pathname}`, { method, headers, body: body && JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
    } catch (e) {
      throw new Refused(`Mailtura at ${api} does not answer (${e.cause?.code ?? e.message}): check --api`);
    }
    const text = await res.text();
    if (!res.ok) {
      const why = res.status === 401 || res.status === 403 ? ": check --key (and --tenant)" : "";
      throw new Refused(`Mailtura refused ${method} /api/v1${pathname} with ${res.status}${why}: ${redact(text.slice(0, 300))}`);
    }
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  };
}

/** The webhooks of Mailtura's list answer (its shape is not documented: a list, or one under data or webhooks). */
function listOf(j) {
  const list = Array.isArray(j) ? j : (j?.data ?? j?.webhooks);
  if (!Array.isArray(list) || !list.every((w) => w && typeof w === "object")) {
    throw new Refused("Mailtura's list of webhooks came in a shape this command does not know: nothing was changed; set the webhook up by hand (npm run mailhook -- connect mailtura without --api prints how)");
  }
  return list;
}
const idOf = (j) => j?.id ?? j?.data?.id ?? j?.webhook?.id;

async function connectMailtura(values, url, token) {
  const seconds = waitSeconds(values, 120);
  const secret = randomBytes(32).toString("hex");
  const call = mailtura(values, [secret]);
  const events = values.events ? values.events.split(",").map((e) => e.trim().replace(/^email\./, "")).filter(Boolean) : MAILTURA_EVENTS;
  const unknown = events.filter((e) => !MAILTURA_EVENTS.includes(e));
  if (unknown.length) throw new Refused(`--events: ${unknown.join(", ")} is not a Mailtura event (${MAILTURA_EVENTS.join(", ")})`);
  await checkMailhook(url, token);
  const target = `${url}/webhooks/mailtura`;
  const before = listOf(await call("GET", "/webhooks")).filter((w) => w.url === target);
  const id = idOf(await call("POST", "/webhooks", { url: target, events, enabled: true, secret }));
  if (!id) throw new Refused("Mailtura created the webhook but answered no id: find it in Mailtura's UI, send its test event yourself, and delete any older webhook to this mailhook");
  console.log(`created Mailtura's webhook ${id} to ${target} (events: ${events.join(", ")})`);
  try {
    await putSecret("MAILTURA_WEBHOOK_SECRET", secret, values.config && path.resolve(values.config));
  } catch (e) {
    await call("DELETE", `/webhooks/${encodeURIComponent(id)}`).catch(() => {});
    throw new Refused(`${e.message}\n  the new webhook ${id} was deleted again; run connect once wrangler works`);
  }
  console.log("stored its secret: wrangler secret put MAILTURA_WEBHOOK_SECRET");
  const seen = await seenNow(url, token, "mailtura");
  const test = () => call("POST", `/webhooks/${encodeURIComponent(id)}/test`, { eventType: "email.delivered" });
  await test();
  console.log("sent Mailtura's test event (email.delivered); waiting for it in mailhook's event log…");
  const event = await waitForEvent(url, token, "mailtura", { seen, seconds, type: "email.delivered", nudge: test });
  if (!event) {
    throw new Refused(
      `the test event did not arrive in ${seconds} s (npx wrangler tail shows what mailhook answered it: a stale_event means Mailtura's test event carries an old timestamp; ` +
        `try a real send): the new webhook ${id} stays beside ${before.length} older one(s); run connect again, or disconnect mailtura to remove them all`,
    );
  }
  // The older webhooks to this mailhook sign with a secret it no longer has: the new one replaces them.
  for (const w of before) {
    await call("DELETE", `/webhooks/${encodeURIComponent(idOf(w))}`);
    console.log(`deleted the older webhook ${idOf(w)} to ${target}`);
  }
  console.log(`connected: ${event.id} (${event.type}) is in the event log, ${event.status}`);
}

function waitSeconds(values, otherwise) {
  if (values.wait === undefined) return otherwise;
  const n = Number(values.wait);
  if (!Number.isFinite(n) || n <= 0) throw new Refused(`--wait ${values.wait}: give a number of seconds`);
  return n;
}

async function connectOther(name, values, url, token) {
  const p = provider(name);
  const seconds = waitSeconds(values, 600);
  await checkMailhook(url, token);
  // Before the steps are shown: the provider's test event may come before the secret is pasted.
  const seen = await seenNow(url, token, name);
  console.log(`Connect ${name} to mailhook at ${url}:`);
  for (const [i, step] of p.steps(url).entries()) console.log(`  ${i + 1}. ${step}`);
  if (p.secret) {
    const value = await ask(`Paste ${p.secret} (${p.hint}) to store it now, or press Enter to store it yourself:`, { hidden: true });
    if (value) {
      try {
        await putSecret(p.secret, value, values.config && path.resolve(values.config));
      } catch (e) {
        throw new Refused(`${e.message}\n  store it yourself: npx wrangler secret put ${p.secret}`);
      }
      console.log(`stored: wrangler secret put ${p.secret}`);
    }
  }
  done();
  console.log(`waiting for ${name}'s test event in mailhook's event log… (Ctrl-C to stop)`);
  const event = await waitForEvent(url, token, name, { seen, seconds });
  if (!event) throw new Refused(`no ${name} event arrived: check the steps above, then npm run mailhook -- doctor --url ${url}`);
  console.log(`connected: ${event.id} (${event.type}) is in the event log, ${event.status}`);
}

async function disconnectMailtura(values, url) {
  const call = mailtura(values);
  const target = `${url}/webhooks/mailtura`;
  const ours = listOf(await call("GET", "/webhooks")).filter((w) => w.url === target);
  for (const w of ours) {
    await call("DELETE", `/webhooks/${encodeURIComponent(idOf(w))}`);
    console.log(`deleted Mailtura's webhook ${idOf(w)} to ${target}`);
  }
  if (!ours.length) console.log(`Mailtura has no webhook to ${target}`);
  const r = await wrangler(["secret", "delete", "MAILTURA_WEBHOOK_SECRET"], { config: values.config && path.resolve(values.config) });
  if (r.code === 0) console.log("deleted the secret MAILTURA_WEBHOOK_SECRET: mailhook now refuses anything sent as Mailtura (503, not configured)");
  else if (/not found|10056/i.test(said(r))) console.log("MAILTURA_WEBHOOK_SECRET was not set");
  else throw new Refused(`wrangler secret delete MAILTURA_WEBHOOK_SECRET failed:\n    ${said(r)}`);
}

/** `connect` and `disconnect`; `secret(name)` reads the environment, else .dev.vars. */
export async function connectCommand(args, secret, { disconnect = false } = {}) {
  try {
    const { values, positionals } = options(args);
    const name = positionals[0];
    const names = PROVIDERS.map((p) => p.name);
    if (!names.includes(name)) throw new Refused(`${disconnect ? "disconnect mailtura" : `connect <${names.join("|")}>`}: which provider?`);
    const url = mailhookUrl(values);
    if (disconnect) {
      if (name !== "mailtura") throw new Refused(`${name} has no API to remove its webhook from: remove it in ${name}'s own console`);
      return await disconnectMailtura(values, url);
    }
    // A deployed mailhook's token comes from the environment only: .dev.vars holds the local one.
    const local = /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?$/.test(url);
    const token = local ? secret("ADMIN_TOKEN") : process.env.ADMIN_TOKEN?.trim();
    // Mailtura through its API; without --api, by hand like the others.
    return name === "mailtura" && values.api ? await connectMailtura(values, url, token) : await connectOther(name, values, url, token);
  } catch (e) {
    done();
    if (!(e instanceof Refused)) throw e;
    console.error(`mailhook: ${e.message}`);
    process.exit(1);
  }
}
