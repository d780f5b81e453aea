// The bench's load: autocannon posting signed Maileroo `delivered` events,
// each a new event, so every request verifies, maps, checks KV and enqueues.
// Shared by bench/run.mjs and bench/profile-cpu.mjs.
import { createHmac, randomBytes } from "node:crypto";
import autocannon from "autocannon";
import { SECRETS } from "../tests/integration/harness.mjs";

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
