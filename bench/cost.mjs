// What one event costs in platform operations, measured: every Workers
// invocation, KV read and write, queue operation, D1 row read and written
// and R2 operation that mailhook performs, for small and large events, with
// one, two and three destinations. The Worker counts each operation where it
// makes it (D1 rows from D1's own `meta`) and logs the counts with each
// request and each queue batch (`ops`, src/edge/ops.rs); this sums them.
//
// `node bench/cost.mjs` prints the tables; `npm run bench` puts them in BENCHMARKS.md.
import { fileURLToPath } from "node:url";
import { SECRETS, startMailhook, startOrigin, waitFor } from "../tests/integration/harness.mjs";
import { mailerooRequest } from "./load.mjs";
import { largeEmail } from "./memory.mjs";

const say = (m) => process.stderr.write(`bench: ${m}\n`);
const key = (name) => "whsec_" + Buffer.from(`cost bench ${name}`).toString("base64");

/** Prices per million on the Workers Paid plan, beyond what the plan includes. */
export const PRICES = {
  source:
    "developers.cloudflare.com: workers/platform/pricing, kv/platform/pricing, queues/platform/pricing, d1/platform/pricing, r2/pricing (stored copies, read 2026-11-25; Queues on the Free plan since the changelog of 2026-02-04)",
  perMillion: {
    requests: 0.3,
    kv_read: 0.5,
    kv_write: 5.0,
    queue_ops: 0.4,
    d1_rows_read: 0.001,
    d1_rows_written: 1.0,
    r2_class_a: 4.5,
    r2_class_b: 0.36,
  },
};

/** The Free plan's daily limits (R2's are monthly: a thirtieth of them). */
export const FREE_DAILY = {
  requests: ["Workers requests (100,000/day)", 100_000],
  kv_read: ["KV reads (100,000/day)", 100_000],
  kv_write: ["KV writes (1,000/day)", 1_000],
  queue_ops: ["Queues operations (10,000/day)", 10_000],
  d1_rows_read: ["D1 rows read (5,000,000/day)", 5_000_000],
  d1_rows_written: ["D1 rows written (100,000/day)", 100_000],
  r2_class_a: ["R2 class A (1,000,000/month)", 1_000_000 / 30],
  r2_class_b: ["R2 class B (10,000,000/month)", 10_000_000 / 30],
};

const FIELDS = ["requests", "kv_read", "kv_write", "queue_ops", "d1_rows_read", "d1_rows_written", "r2_class_a", "r2_class_b"];

export function sumOps(logs) {
  const total = Object.fromEntries([...FIELDS, "queue_write", "queue_read", "queue_delete", "d1_queries", "subrequests"].map((f) => [f, 0]));
  for (const line of logs) {
    if (!line.startsWith("{") || !line.includes('"ops"')) continue;
    let ops;
    try { ops = JSON.parse(line).ops; } catch { continue; }
    for (const [k, v] of Object.entries(ops ?? {})) if (k in total) total[k] += v;
  }
  total.queue_ops = total.queue_write + total.queue_read + total.queue_delete;
  return total;
}

/** Sends `count` events of `kind` (small: a Maileroo event; large: a 500 KB ImprovMX email) to mailhook with `dests` destinations. */
async function scenario(kind, dests, count) {
  const origins = [];
  const secrets = {};
  const declared = [];
  for (let i = 0; i < dests; i++) {
    const name = `d${i + 1}`;
    origins.push(await startOrigin({ secret: key(name) }));
    secrets[`DESTINATION_D${i + 1}_SIGNING_SECRET`] = key(name);
    declared.push({ name, url: origins[i].url });
  }
  const hook = await startMailhook({ vars: { ORIGIN_URL: undefined, DESTINATIONS: declared }, secrets: { ...SECRETS, ...secrets } });
  try {
    // One event first, not counted: the first delivery to a destination writes its circuit's row, once in its life.
    const warm = mailerooRequest();
    await hook.post("maileroo", warm.body, warm.headers);
    await waitFor(() => origins.every((o) => o.deliveries.length >= 1), { ms: 30_000, what: "the warm-up event" });
    await waitFor(() => sumOps(hook.logs).queue_delete >= dests, { ms: 10_000, what: "the warm-up batch's log line" });
    hook.logs.length = 0;
    for (let i = 0; i < count; i++) {
      const r =
        kind === "small"
          ? await (async () => { const { body, headers } = mailerooRequest(); return hook.post("maileroo", body, headers); })()
          : await hook.post("improvmx", largeEmail(500_000, `cost-${dests}-${i}`), { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" });
      if (r.status !== 200 || r.json.status !== "accepted") throw new Error(`event ${i}: ${r.status} ${r.text}`);
    }
    await waitFor(() => origins.every((o) => o.deliveries.length >= count + 1), { ms: 60_000, what: "every delivery" });
    // The consumer logs a batch's counts after its last message: wait for the line.
    await waitFor(() => sumOps(hook.logs).queue_delete >= count * dests, { ms: 10_000, what: "the batches' log lines" });
    const total = sumOps(hook.logs);
    return { kind, dests, count, total, perEvent: Object.fromEntries(Object.entries(total).map(([k, v]) => [k, v / count])) };
  } finally {
    await hook.dispose();
    for (const o of origins) await o.close();
  }
}

export async function measureCosts({ small = 40, large = 4 } = {}) {
  const results = [];
  for (const kind of ["small", "large"]) {
    for (const dests of [1, 2, 3]) {
      say(`cost: ${kind} events, ${dests} destination(s)`);
      results.push(await scenario(kind, dests, kind === "small" ? small : large));
    }
  }
  return results;
}

export const price = (perEvent) => FIELDS.reduce((sum, f) => sum + perEvent[f] * PRICES.perMillion[f], 0);

function freeLimit(perEvent) {
  let best = { events: Infinity, limit: "none" };
  for (const [f, [label, limit]] of Object.entries(FREE_DAILY)) {
    if (perEvent[f] > 0 && limit / perEvent[f] < best.events) best = { events: Math.floor(limit / perEvent[f]), limit: label };
  }
  return best;
}

const n = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(2));

export function costMarkdown(results) {
  const rows = results.map((r) => {
    const p = r.perEvent;
    const free = freeLimit(p);
    return `| ${r.kind} | ${r.dests} | ${FIELDS.map((f) => n(p[f])).join(" | ")} | $${price(p).toFixed(2)} | ${free.events.toLocaleString("en")} (${free.limit}) |`;
  });
  const byKind = (kind) => results.filter((r) => r.kind === kind);
  const marginal = ["small", "large"].map((kind) => {
    const [one, , three] = byKind(kind);
    const step = Object.fromEntries(FIELDS.map((f) => [f, (three.perEvent[f] - one.perEvent[f]) / 2]));
    return `| ${kind} | ${FIELDS.map((f) => n(step[f])).join(" | ")} | $${price(step).toFixed(2)} |`;
  });
  return `Measured per event, averaged over ${results[0].count} small events (signed Maileroo events, each new) and ${results[3].count} large ones
(ImprovMX emails of 500 KB, stored in R2) per row, every destination answering 204, in Miniflare on 127.0.0.1
(\`node bench/cost.mjs\`). "requests" are Workers invocations: one per webhook and one per queue batch (the consumer takes
up to 10 messages per batch; how many arrive together depends on the traffic, so that column varies most). Queue operations
are per 64 KB written, read or deleted. D1 rows are D1's own \`rows_read\`/\`rows_written\` (index rows included). One
event is sent first and not counted: the first delivery to a destination writes its circuit's row, once in its life.
A small event to one destination writes two: its event row, which also keeps the delivery, and the index of its id
(\`migrations/0009_two_rows.sql\`: a delivery whose first attempt succeeded, logged as its event's first step, is kept
in the event's row; \`deliveries\` holds every other delivery, \`delivery_attempts\` failures, later attempts and replays;
0007 dropped the index by time). The event stays a rowid table, in the order events are logged: kept in its primary
key's b-tree instead it would take 4.7 KB of the database, not 1.5 KB (SQLite puts most of such a row on an overflow
page of its own), and the console's newest-first list would need an index by time. Each further destination
writes its delivery row as \`queued\` (with its entry in the index of unfinished deliveries), then as delivered.

| event | destinations | requests | KV reads | KV writes | queue ops | D1 rows read | D1 rows written | R2 class A | R2 class B | $ per million events (Paid) | events/day on Free (the limit that binds) |
|---|---|---|---|---|---|---|---|---|---|---|---|
${rows.join("\n")}

Each added destination (the mean step from one to three):

| event | requests | KV reads | KV writes | queue ops | D1 rows read | D1 rows written | R2 class A | R2 class B | $ per million events |
|---|---|---|---|---|---|---|---|---|---|
${marginal.join("\n")}

Prices: Workers Paid, per million beyond what the plan includes: requests $0.30, KV reads $0.50, KV writes $5.00, Queues
operations $0.40, D1 rows read $0.001, D1 rows written $1.00, R2 class A $4.50, class B $0.36 (R2 deletes are free). The plan's
$5 a month includes 10 M requests, 10 M KV reads, 1 M KV writes, 1 M queue operations, 25 billion D1 rows read and 50 M
written, so a small deployment pays the $5 and little else. CPU time ($0.02 per million CPU ms) is left out: at about a
millisecond per request (section 3) it is cents per million events. R2 storage ($0.015 per GB-month) is the large events
kept for LOG_RETENTION_DAYS. Free plan daily limits: 100,000 requests, 100,000 KV reads, 1,000 KV writes, 10,000 queue
operations, 5 M D1 rows read, 100,000 written; R2's are monthly (1 M class A, 10 M class B), counted here as a thirtieth a day.
Source: ${PRICES.source}.`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results = await measureCosts();
  console.log(costMarkdown(results));
  process.exit(0);
}
