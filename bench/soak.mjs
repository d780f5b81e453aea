// The soak (`npm run soak`): 10,000 events (SOAK_EVENTS) from all six sources, through the
// built Worker in Miniflare with its local KV, Queues, R2 and D1, to four destinations on
// 127.0.0.1, three of them with faults, on a compressed schedule; then what the origins
// themselves received is checked: every accepted event reached each destination that takes
// it exactly once after its first 2xx (the ones that died there, after a bulk replay), none
// was lost, none refused, and every body verifies with the Standard Webhooks library.
//
// The destinations:
//   flaky    takes everything: bursts of 500, a 429 with Retry-After now and then, and an
//            answer that never comes (past its 2-second timeout) now and then;
//   picky    takes Maileroo, Mailtura, ImprovMX and mail: 410 for some events (dead at once),
//            and 500 every time for some others (poison: they die on their schedule);
//   breaker  takes adm.tools, Mail-Plus and Maileroo: down for 15 s, so its circuit opens,
//            is probed and closes;
//   steady   takes everything and answers 204: the latency of a healthy destination.
// Removing a destination mid-run and restoring it is left out: Miniflare's queues do not
// outlive an instance, so a restart would lose what is queued, which the platform does not.
//
// Then the latency phase: 50 events a second for 20 s to one healthy origin, with each
// candidate setting of the consumers' batches, for the choice in wrangler.toml.
//
// Writes bench/soak.json and the soak section of BENCHMARKS.md. Bounded: 127.0.0.1 only,
// SOAK_EVENTS events, and a deadline for each phase (it fails rather than waits forever).
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { workerd } from "./workerd.mjs";
import path from "node:path";
import { admHeaders, root, signedHeaders, sleep, startMailhook, startOrigin, waitFor, wrangler } from "../tests/integration/harness.mjs";
import { price, sumOps } from "./cost.mjs";
import { mailerooRequest } from "./load.mjs";

const EVENTS = Number(process.env.SOAK_EVENTS ?? 10_000);
const CONCURRENCY = 16;
const say = (m) => process.stderr.write(`soak: ${m}\n`);
const key = (name) => "whsec_" + Buffer.from(`soak ${name}`).toString("base64");
const unit = (id) => parseInt(createHash("sha256").update(id).digest("hex").slice(0, 8), 16) / 2 ** 32;
const pct = (xs, p) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] : null);
const now = () => Math.floor(Date.now() / 1000);
const MAIL_PLUS_IP = "198.51.100.77";
const IMPROVMX_IP = "15.237.103.194";


// ---- the events ----
let seq = 0;
/** One new event of the mix (35 % Maileroo, 20 % Mailtura and adm.tools, 10 % ImprovMX and Mail-Plus, 5 % mail; 1 % large). */
function newEvent(i) {
  seq += 1;
  const tag = `${process.pid}-${seq}-${randomBytes(3).toString("hex")}`;
  if (i % 100 === 50) return improvmx(tag, 200_000);
  const r = i % 20;
  if (r < 7) { const { body, headers } = mailerooRequest(); return { provider: "maileroo", body, headers }; }
  if (r < 11) {
    const body = JSON.stringify({ id: `evt_${tag}`, type: "email.delivered", timestamp: new Date().toISOString(), data: { emailId: `msg_${tag}`, recipient: "user@example.com" } });
    return { provider: "mailtura", body, headers: signedHeaders.mailtura(body) };
  }
  if (r < 15) {
    const body = JSON.stringify({ mailbox: "desk@example.com.ua", uid: seq, tstamp: now(), event: "new", folder: "INBOX", subject: `soak ${tag}` });
    return { provider: "adm-tools", body, headers: admHeaders() };
  }
  if (r < 17) return improvmx(tag, 0);
  if (r < 19) {
    const body = JSON.stringify({ subject: `soak ${tag}`, from: "dave@example.com", to: "desk@example.org", text: "hello" });
    return { provider: "mail-plus", body, headers: { "content-type": "application/json", "cf-connecting-ip": MAIL_PLUS_IP } };
  }
  const raw = [
    "From: Sender <sender@example.net>", "To: inbox@mailhook.test", `Subject: soak ${tag}`, `Message-ID: <${tag}@example.net>`,
    `Date: ${new Date().toUTCString()}`, "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "", `mail ${tag}`, "",
  ].join("\r\n");
  return { provider: "email-routing", raw, messageId: `<${tag}@example.net>` };
}

function improvmx(tag, attachment) {
  const body = JSON.stringify({
    headers: { "Delivered-To": "desk@example.org" }, to: [{ name: "Desk", email: "desk@example.org" }], from: { name: "S", email: "s@example.net" },
    subject: `soak ${tag}`, "message-id": `<${tag}@example.net>`, timestamp: now(), text: "hello", html: "<p>hello</p>",
    attachments: attachment ? [{ type: "application/octet-stream", name: `${tag}.bin`, content: randomBytes(attachment).toString("base64"), encoding: "binary" }] : [],
  });
  return { provider: "improvmx", body, headers: { "content-type": "application/json", "cf-connecting-ip": IMPROVMX_IP }, large: attachment > 0 };
}

// ---- the destinations ----
const TAKES = {
  flaky: null,
  picky: ["maileroo", "mailtura", "improvmx", "email-routing"],
  breaker: ["adm-tools", "mail-plus", "maileroo"],
  steady: null,
};
const takes = (dest, provider) => TAKES[dest] === null || TAKES[dest].includes(provider);

function faults(t0) {
  let healed = false;
  const since = () => (Date.now() - t0) / 1000;
  const respond = {
    flaky: (d) => {
      if (healed) return 204;
      const s = since();
      if ((s > 10 && s < 14) || (s > 40 && s < 44)) return 500;
      const u = unit(d.id + d.headers["webhook-timestamp"]);
      if (u < 0.02) return { status: 429, headers: { "retry-after": "1" } };
      if (u < 0.03) return { hang: true };
      return 204;
    },
    picky: (d) => {
      if (healed) return 204;
      const u = unit(d.id);
      if (u < 0.02) return 410;
      if (u < 0.04) return 500;
      return 204;
    },
    breaker: () => (!healed && since() > 20 && since() < 35 ? 503 : 204),
    steady: () => 204,
  };
  return { respond, heal: () => { healed = true; } };
}

async function send(hook, e) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = e.provider === "email-routing" ? await hook.email(e.raw) : await hook.post(e.provider, e.body, e.headers);
    if (r.status !== 503) return r;
    await sleep(200 * (attempt + 1)); // what a provider does with a 503: it sends again
  }
  return { status: 503 };
}

async function pool(items, n, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (next < items.length) await fn(items[next++]); }));
}

/** All the D1 rows of deliveries still on their way. */
async function unfinished(hook) {
  const db = await hook.db();
  return (await db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE status IN ('queued', 'held', 'retrying')").first()).n;
}

async function soak() {
  const t0 = Date.now();
  const { respond, heal } = faults(t0);
  const origins = {};
  for (const name of Object.keys(TAKES)) origins[name] = await startOrigin({ secret: key(name), respond: respond[name] });
  const declared = Object.keys(TAKES).map((name) => ({
    name, url: origins[name].url, ...(TAKES[name] ? { filter: { providers: TAKES[name] } } : {}),
    ...(name === "flaky" ? { timeout_seconds: 2 } : {}),
    ...(name === "breaker" ? { circuit_failures: 5, circuit_probe_seconds: 2 } : {}),
  }));
  const secrets = Object.fromEntries(Object.keys(TAKES).map((n) => [`DESTINATION_${n.toUpperCase()}_SIGNING_SECRET`, key(n)]));
  const hook = await startMailhook({
    vars: { ORIGIN_URL: undefined, DESTINATIONS: declared, RETRY_SCHEDULE_SECONDS: "1,1,2,2,4", CIRCUIT_FAILURES: "20", CIRCUIT_PROBE_SECONDS: "2", MAIL_PLUS_VERIFY: "ip", MAIL_PLUS_ALLOWED_IPS: MAIL_PLUS_IP },
    secrets,
  });
  const cpu0 = workerd().cpu;
  try {
    // Ingest: every new event, with 20 % of them sent again (half at once with the first copy, half later).
    const events = Array.from({ length: EVENTS }, (_, i) => newEvent(i));
    const jobs = events.map((e, i) => ({ e, together: i % 10 === 3 }));
    for (let i = 0; i < EVENTS; i += 10) jobs.push({ e: events[i + 7] ?? events[i], again: true });
    const accepted = new Map(); // event id -> { provider, at }
    const mails = new Map(); // message-id -> provider (mail answers without the event's id)
    const refused = [];
    let duplicates = 0;
    const ingestStart = Date.now();
    await pool(jobs, CONCURRENCY, async ({ e, together }) => {
      const answers = await Promise.all((together ? [e, e] : [e]).map((x) => send(hook, x)));
      for (const r of answers) {
        if (r.status !== 200) { refused.push({ provider: e.provider, status: r.status, text: r.text }); continue; }
        if (e.provider === "email-routing") { mails.set(e.messageId, e.provider); continue; }
        if (r.json.status === "duplicate") duplicates += 1;
        for (const id of r.json.ids) if (!accepted.has(id)) accepted.set(id, { provider: e.provider, at: Date.now(), large: !!e.large });
      }
    });
    const ingestSeconds = (Date.now() - ingestStart) / 1000;
    say(`ingest: ${jobs.length} requests in ${ingestSeconds.toFixed(1)} s, ${accepted.size} events and ${mails.size} messages accepted, ${duplicates} duplicates, ${refused.length} refused`);

    // Faults run their course; then every delivery is delivered or dead.
    await waitFor(async () => Date.now() - t0 > 50_000 && (await unfinished(hook)) === 0, { ms: 15 * 60_000, what: "every delivery delivered or dead" });
    const settled = (Date.now() - ingestStart) / 1000;
    const db = await hook.db();
    const dead = (await db.prepare("SELECT destination, COUNT(*) AS n FROM deliveries WHERE status = 'dead' GROUP BY destination").all()).results;
    say(`settled ${settled.toFixed(1)} s after the first request; dead: ${JSON.stringify(dead)}`);

    // The destinations recover; the dead are replayed in bulk, as `mailhook replay --dead` does.
    heal();
    let before;
    let replayed = 0;
    for (let round = 0; round < 100; round++) {
      const r = await hook.admin(`/admin/replay?status=dead&limit=1000${before ? `&before=${encodeURIComponent(before)}` : ""}`, { method: "POST" });
      if (r.status !== 202) throw new Error(`bulk replay: ${r.status} ${r.text}`);
      before ??= r.json.before;
      replayed += r.json.count;
      if (r.json.count === 0 || r.json.remaining === 0) break;
    }
    await waitFor(async () => (await unfinished(hook)) === 0, { ms: 5 * 60_000, what: "the replays delivered" });

    // What the origins received.
    const mailIds = new Map(); // event id -> message-id, from the deliveries
    for (const o of Object.values(origins)) for (const d of o.deliveries) if (d.event?.source?.includes("email-routing") || d.event?.data?.provider === "email-routing") mailIds.set(d.id, d.event.data.message_id);
    for (const [id, mid] of mailIds) if (!accepted.has(id) && mails.has(mid)) accepted.set(id, { provider: "email-routing", at: null });
    const problems = [];
    let pairs = 0;
    for (const [name, o] of Object.entries(origins)) {
      const got = new Map();
      for (const d of o.deliveries) got.set(d.id, (got.get(d.id) ?? 0) + 1);
      for (const [id, { provider }] of accepted) {
        if (!takes(name, provider)) {
          if (got.has(id)) problems.push(`${name} got ${id} (${provider}), which its filter does not take`);
          continue;
        }
        pairs += 1;
        const n = got.get(id) ?? 0;
        if (n === 0) problems.push(`lost: ${id} (${provider}) never reached ${name}`);
        if (n > 1) problems.push(`duplicated: ${id} (${provider}) reached ${name} ${n} times after its first 2xx`);
      }
      for (const id of got.keys()) if (!accepted.has(id)) problems.push(`${name} got ${id}, which no accepted request made`);
      for (const bad of o.invalid) problems.push(`${name}: a body that does not verify: ${bad.error}`);
    }
    if (mailIds.size < mails.size) problems.push(`mail: ${mails.size} messages accepted, ${mailIds.size} delivered`);
    for (const r of refused) problems.push(`refused: ${r.provider} ${r.status} ${r.text ?? ""}`);

    // Numbers.
    const ops = sumOps(hook.logs);
    const perEvent = Object.fromEntries(Object.entries(ops).map(([k, v]) => [k, v / accepted.size]));
    const firsts = [];
    for (const d of origins.steady.deliveries) {
      const a = accepted.get(d.id);
      if (a?.at && !firsts.some((x) => x.id === d.id)) firsts.push({ id: d.id, ms: d.at - a.at });
    }
    const latency = firsts.map((f) => f.ms);
    const wasm = Math.max(0, ...hook.logs.map((l) => { try { return JSON.parse(l).wasm_kib ?? 0; } catch { return 0; } }));
    const cpu = workerd().cpu - cpu0;
    const result = {
      events: accepted.size, requests: jobs.length + jobs.filter((j) => j.together).length, mails: mails.size, duplicates,
      large: [...accepted.values()].filter((a) => a.large).length, refused: refused.length, dead: Object.fromEntries(dead.map((d) => [d.destination, d.n])),
      replayed, pairs, lost: problems.filter((p) => p.startsWith("lost")).length, duplicated: problems.filter((p) => p.startsWith("duplicated")).length,
      invalid: Object.values(origins).reduce((n, o) => n + o.invalid.length, 0), problems: problems.slice(0, 20),
      ingestSeconds, acceptedPerSecond: accepted.size / ingestSeconds, settledSeconds: settled, deliveredPerSecond: pairs / settled,
      steadyLatencyMs: { p50: pct(latency, 50), p99: pct(latency, 99), max: Math.max(...latency), n: latency.length },
      cpuMsPerEvent: (cpu * 1000) / accepted.size, d1RowsWrittenPerEvent: perEvent.d1_rows_written, perEvent,
      dollarsPerMillion: price(perEvent), wasmPeakKiB: wasm, workerdPeakRssMB: workerd().hwm / 1e6,
    };
    return result;
  } finally {
    await hook.dispose();
    for (const o of Object.values(origins)) await o.close();
  }
}

/** 50 events a second for `seconds` to one healthy origin, with the consumers' batches set to `batch`. */
async function latency(batch, seconds = 20, rate = 50) {
  const origin = await startOrigin();
  const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url }, batch });
  const cpu0 = workerd().cpu;
  try {
    const sent = new Map();
    const start = Date.now();
    const total = seconds * rate;
    const inflight = [];
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / rate;
      if (due > Date.now()) await sleep(due - Date.now());
      inflight.push((async () => {
        const { body, headers } = mailerooRequest();
        const r = await hook.post("maileroo", body, headers);
        if (r.status === 200) sent.set(r.json.ids[0], Date.now());
      })());
    }
    await Promise.all(inflight);
    await waitFor(() => origin.deliveries.length >= sent.size, { ms: 60_000, what: "the latency phase's deliveries" });
    const ms = origin.deliveries.filter((d) => sent.has(d.id)).map((d) => d.at - sent.get(d.id));
    const batches = hook.logs.filter((l) => l.includes('"kind":"batch"')).length;
    const ops = sumOps(hook.logs);
    const perEvent = Object.fromEntries(Object.entries(ops).map(([k, v]) => [k, v / sent.size]));
    return {
      batch, events: sent.size, p50: pct(ms, 50), p99: pct(ms, 99), max: Math.max(...ms),
      invocationsPerEvent: batches / sent.size, cpuMsPerEvent: ((workerd().cpu - cpu0) * 1000) / sent.size, dollarsPerMillion: price(perEvent),
    };
  } finally {
    await hook.dispose();
    await origin.close();
  }
}

function markdown(r, lat, chosen) {
  const ms = (x) => (x === null ? "–" : `${Math.round(x)} ms`);
  const rows = lat.map((l) => `| ${l.batch.size} | ${l.batch.timeout} s | ${ms(l.p50)} | ${ms(l.p99)} | ${ms(l.max)} | ${l.invocationsPerEvent.toFixed(2)} | ${l.cpuMsPerEvent.toFixed(2)} ms | $${l.dollarsPerMillion.toFixed(2)} |${l === chosen ? " chosen |" : " |"}`);
  return `## 7. The soak: ${r.events.toLocaleString("en")} events with faults

\`npm run soak\` (bench/soak.mjs; SOAK_EVENTS sets the count): ${r.requests.toLocaleString("en")} requests from all six sources
(${r.duplicates.toLocaleString("en")} answered as duplicates, some sent twice at once; ${r.large} large events in R2; ${r.mails} Email Routing
messages) to four destinations on 127.0.0.1: \`flaky\` (bursts of 500, 429 with Retry-After, answers that never come),
\`picky\` (410 for some events, 500 every time for others), \`breaker\` (down 15 s: its circuit opens and closes) and
\`steady\`; retry schedule 1, 1, 2, 2, 4 s. Then the destinations recover and the dead are replayed in bulk.

| | |
|---|---|
| lost | **${r.lost}** of ${r.pairs.toLocaleString("en")} deliveries (each accepted event at each destination that takes it) |
| delivered again after a 2xx | **${r.duplicated}** |
| refused valid requests | **${r.refused}** |
| bodies that do not verify (Standard Webhooks library) | **${r.invalid}** |
| dead before the replay, by destination | ${Object.entries(r.dead).map(([d, n]) => `${d} ${n}`).join(", ") || "none"}; replayed in bulk: ${r.replayed} |
| accepted | ${r.acceptedPerSecond.toFixed(0)} events/s (${r.ingestSeconds.toFixed(1)} s, 16 senders at once) |
| delivered, faults included | ${r.deliveredPerSecond.toFixed(0)} deliveries/s until every one was delivered or dead (${r.settledSeconds.toFixed(0)} s) |
| latency to the healthy destination, acceptance to its 2xx | p50 ${ms(r.steadyLatencyMs.p50)}, p99 ${ms(r.steadyLatencyMs.p99)}, max ${ms(r.steadyLatencyMs.max)} (under the ingest's full load) |
| CPU per event (workerd, every delivery and retry included) | ${r.cpuMsPerEvent.toFixed(2)} ms |
| D1 rows written per event (faults, retries and replays included) | ${r.d1RowsWrittenPerEvent.toFixed(2)} |
| $ per million events, from the counted operations | $${r.dollarsPerMillion.toFixed(2)} (four destinations, faults included) |
| peak memory | Wasm ${(r.wasmPeakKiB / 1024).toFixed(1)} MB; workerd's resident peak ${r.workerdPeakRssMB.toFixed(0)} MB (every Worker of the instance) |

The delivery rate and the healthy destination's latency under the ingest's load are Miniflare's: it runs one consumer
invocation at a time, where Queues runs up to 250 (README, Scale), so the queue grows while 16 senders post; the latency
at a steady rate is in the table below. Most of the settling time is \`picky\`'s poison events: once only they are left,
every delivery to \`picky\` fails, its circuit opens, and they spend their schedules three probes per interval (2 s here),
as a destination that is down would be treated. CPU is workerd's own (its process time over the run), for everything:
ingest, four deliveries an event, retries, holds and the replays.

**The consumers' batches, by measurement**: 50 events a second for 20 s to one healthy origin, acceptance to the
origin's receipt, per setting of \`max_batch_size\` and \`max_batch_timeout\` (invocations are queue batches per
event; CPU is workerd's, ingest included; $ from the counted operations, one destination):

| max_batch_size | max_batch_timeout | p50 | p99 | max | invocations per event | CPU per event | $ per million | |
|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}
`;
}

const result = await soak();
say(JSON.stringify({ ...result, problems: undefined }));
const lat = [];
for (const batch of [{ size: 10, timeout: 1 }, { size: 10, timeout: 0 }, { size: 1, timeout: 0 }]) {
  say(`latency: batches of ${batch.size}, ${batch.timeout} s`);
  lat.push(await latency(batch));
  say(JSON.stringify(lat.at(-1)));
}
const events = wrangler.queues.consumers.find((c) => c.queue === "mailhook-events");
const chosen = lat.find((l) => l.batch.size === events.max_batch_size && l.batch.timeout === events.max_batch_timeout);
writeFileSync(path.join(root, "bench/soak.json"), JSON.stringify({ result, latency: lat }, null, 2) + "\n");
const md = markdown(result, lat, chosen);
const file = path.join(root, "BENCHMARKS.md");
const bench = readFileSync(file, "utf8");
// In place of the last soak's section, or after section 6 (the costs), before the notes.
let at = bench.indexOf("## 7. The soak");
let end = at < 0 ? -1 : bench.indexOf("\n## ", at + 5);
if (at < 0) {
  const costs = bench.indexOf("## 6. ");
  at = end = costs < 0 ? -1 : bench.indexOf("\n## ", costs + 5);
}
writeFileSync(file, at < 0 ? `${bench.trimEnd()}\n\n${md}` : bench.slice(0, at + (end === at ? 1 : 0)) + md + (end < 0 ? "" : "\n" + bench.slice(end + 1)));
if (result.problems.length) {
  console.error(result.problems.join("\n"));
  process.exit(1);
}
console.log(`soak: ${result.events} events, ${result.lost} lost, ${result.duplicated} delivered again after a 2xx, ${result.refused} refused`);
