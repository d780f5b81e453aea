// The bench's load: autocannon posting signed Maileroo `delivered` events,
// each a new event, so every request verifies, maps, checks KV and enqueues.
// Shared by bench/run.mjs, bench/startup.mjs and bench/profile-cpu.mjs, with the starter of the hand-written Workers they compare against.
import { createHmac, randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { Miniflare } from "miniflare";
import { SECRETS, wrangler } from "../tests/integration/harness.mjs";

export const MAILEROO_SECRET = SECRETS.MAILEROO_WEBHOOK_SECRET;

let seq = 0;
export function mailerooRequest() {
  seq += 1;
  const body = JSON.stringify({
    domain_id: 123, event_data: { from: ["sender@examplemail.com"], to: ["receiver@examplemail.com"] },
    event_id: `bench-${process.pid}-${seq}-${randomBytes(4).toString("hex")}`, event_time: Math.floor(Date.now() / 1000),
    event_type: "delivered", inserted_at: new Date().toISOString(), message_id: `<bench-${seq}@examplemail.com>`,
    message_reference_id: "mref1234567890abcdef", tags: null, user_id: 1001,
  });
  return { body, headers: { "content-type": "application/json", "x-maileroo-signature": createHmac("sha256", MAILEROO_SECRET).update(body).digest("hex") } };
}

/** `connections` connections for `duration` seconds against `url`; autocannon's result. */
export function load(url, { connections = 10, duration = 8 } = {}) {
  return autocannon({
    url, connections, duration,
    requests: [{ method: "POST", path: "/webhooks/maileroo", setupRequest: (req) => ({ ...req, ...mailerooRequest() }) }],
  });
}

/**
 * Starts one of bench/baseline-js/ (`worker.js`, `floor.js`, `floor-log.js`) in a
 * workerd of its own on 127.0.0.1, with mailhook's Maileroo settings; its log
 * lines are read and dropped, as the harness does with mailhook's.
 */
export async function startBaseline(file, { inspectorPort } = {}) {
  const mf = new Miniflare({
    host: "127.0.0.1", port: 0, ...(inspectorPort ? { inspectorPort } : {}), modules: true,
    scriptPath: path.join(path.dirname(fileURLToPath(import.meta.url)), "baseline-js", file),
    compatibilityDate: wrangler.compatibility_date, kvNamespaces: ["DEDUPE"], queueProducers: { EVENTS: { queueName: "baseline-events" } },
    bindings: { MAILEROO_WEBHOOK_SECRET: MAILEROO_SECRET, MAX_EVENT_AGE_SECONDS: "86400", DEDUPE_TTL_SECONDS: "604800" },
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      stderr.resume();
    },
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return { url, port: inspectorPort, dispose: () => mf.dispose() };
}
