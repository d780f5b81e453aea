// What a review found by attacking mailhook (issue 9), through workerd: each
// test failed on the code before its fix. Pure parts are in tests/hostile.rs.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { fixture, ptrName, signedHeaders, sleep, startDoh, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const IMPROVMX = { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" };

/** A server that answers 200 to anything and remembers what it was sent. */
async function startLanding() {
  const landing = { requests: [] };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      landing.requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { "content-type": "text/html" }).end("<html>a landing page</html>");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  landing.url = `http://127.0.0.1:${server.address().port}`;
  landing.close = () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); });
  return landing;
}

/** A chunked body of 1 KiB chunks that goes on far longer than any answer needs (64 MiB at most). */
function endlessBody() {
  let pulled = 0;
  const stream = new ReadableStream({
    pull(controller) {
      pulled += 1;
      controller.enqueue(new TextEncoder().encode("x".repeat(1024)));
      if (pulled > 65536) controller.close();
      return sleep(2);
    },
  });
  return { stream, pulled: () => pulled };
}

describe("the trust boundary", () => {
  let origin, hook, doh, landing;
  const FORGER = "192.0.2.20";
  const FORGER2 = "192.0.2.21";
  const MANY = "192.0.2.22";
  before(async () => {
    landing = await startLanding();
    origin = await startOrigin({
      respond(d) {
        const subject = d.event.data.subject ?? "";
        if (subject.startsWith("redirect ")) {
          const status = Number(subject.split(" ")[1]);
          return { status, headers: { location: `${landing.url}/moved` } };
        }
        return 204;
      },
    });
    const manyNames = Array.from({ length: 10 }, (_, i) => `mx${i}.mail-plus.com`);
    doh = await startDoh({
      // Found in review: the PTR name was put into the DoH URL unescaped, so the
      // forward lookup asked for `attacker.example`, whose A record the attacker owns.
      [ptrName(FORGER)]: { PTR: ["attacker.example&x=.mail-plus.com"] },
      [ptrName(FORGER2)]: { PTR: ["attacker2.example#.mail-plus.com"] },
      "attacker.example": { A: [FORGER] },
      "attacker2.example": { A: [FORGER2] },
      [ptrName(MANY)]: { PTR: manyNames },
      ...Object.fromEntries(manyNames.map((n) => [n, { A: ["192.0.2.99"] }])),
    });
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url, DOH_URL: doh.url, MAIL_PLUS_VERIFY: "rdns", MAX_BODY_BYTES: "65536" } });
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
    await doh?.close();
    await landing?.close();
  });

  test("1. a PTR name that is not a hostname is refused (403) and never looked up", async () => {
    for (const ip of [FORGER, FORGER2]) {
      const r = await hook.post("mail-plus", fixture("mail-plus", "sample"), { "cf-connecting-ip": ip });
      assert.equal(r.status, 403, `${ip}: ${r.text}`);
      assert.equal(r.json.error.code, "forbidden");
    }
    assert.ok(!doh.queries.some((q) => q.startsWith("attacker")), `no forward lookup: ${doh.queries.join(", ")}`);
  });

  test("9. one unauthenticated request costs at most 3 DoH fetches, and a refusal is remembered without a KV write", async () => {
    const before = doh.queries.length;
    const r = await hook.post("mail-plus", fixture("mail-plus", "sample"), { "cf-connecting-ip": MANY });
    assert.equal(r.status, 403);
    assert.equal(doh.queries.length - before, 3, doh.queries.slice(before).join(", "));
    const again = await hook.post("mail-plus", fixture("mail-plus", "sample"), { "cf-connecting-ip": MANY });
    assert.equal(again.status, 403);
    assert.equal(doh.queries.length - before, 3, "the refusal was cached");
    const keys = (await (await hook.kv()).list({ prefix: "rdns:" })).keys.map((k) => k.name);
    assert.deepEqual(keys, [], "refusals are not written to KV");
  });

  test("3. a forged message reusing a genuine Message-ID does not suppress the genuine one", async () => {
    const genuine = JSON.parse(fixture("improvmx", "sample"));
    genuine["message-id"] = "<notifications/issue/42@github.example>";
    const forged = { ...genuine, text: "Your repository was suspended: sign in at https://attacker.example", html: null };
    const first = await hook.post("improvmx", JSON.stringify(forged), IMPROVMX);
    assert.equal(first.json.status, "accepted");
    const real = await hook.post("improvmx", JSON.stringify(genuine), IMPROVMX);
    assert.equal(real.json.status, "accepted", "the genuine message is not a duplicate");
    assert.notDeepEqual(real.json.ids, first.json.ids);
    const retry = await hook.post("improvmx", JSON.stringify(genuine), IMPROVMX);
    assert.deepEqual(retry.json, { status: "duplicate", ids: real.json.ids }, "ImprovMX's retry still is one");
    await waitFor(() => origin.deliveries.find((d) => d.id === real.json.ids[0]), { what: "the genuine message" });
  });

  for (const status of [302, 307, 308]) {
    test(`4. an origin answering ${status} is a dead letter, and the redirect is not followed`, async () => {
      const body = JSON.parse(fixture("improvmx", "unicode"));
      body.subject = `redirect ${status}`;
      body["message-id"] = `<redirect-${status}@example.com>`;
      const r = await hook.post("improvmx", JSON.stringify(body), IMPROVMX);
      assert.equal(r.status, 200, r.text);
      const id = r.json.ids[0];
      const dead = await waitFor(async () => (await hook.deadLetters()).find((d) => d.id === id), { what: `the ${status} dead letter` });
      assert.equal(dead.last_status, status);
      assert.equal(dead.attempts, 1, "a redirect is permanent, not retried");
      assert.deepEqual(landing.requests, [], "nothing reached the redirect target");
      assert.ok(!origin.deliveries.some((d) => d.id === id), "not delivered");
    });
  }

  test("8. a request without its signature is refused before its body is read (the body never ends)", async () => {
    const body = endlessBody();
    const res = await hook.mf.dispatchFetch("http://127.0.0.1/webhooks/maileroo", {
      method: "POST",
      body: body.stream,
      duplex: "half",
      headers: { "content-type": "application/json" },
    });
    assert.equal(res.status, 401);
    await res.arrayBuffer();
    assert.ok(body.pulled() < 2000, `the body was read: ${body.pulled()} KiB pulled`);
  });

  test("8. a chunked body is refused (413) as soon as it passes MAX_BODY_BYTES", async () => {
    const body = endlessBody();
    // Signed with something: the signature is checked after the body, the size while it is read.
    const res = await hook.mf.dispatchFetch("http://127.0.0.1/webhooks/maileroo", {
      method: "POST",
      body: body.stream,
      duplex: "half",
      headers: { "content-type": "application/json", "x-maileroo-signature": "00" },
    });
    assert.equal(res.status, 413);
    assert.equal((await res.json()).error.code, "payload_too_large");
    assert.ok(body.pulled() < 2000, `read far past the limit: ${body.pulled()} KiB pulled`);
  });

  test("8. a body signed over its bytes is capped at 1 MiB: an unauthenticated sender cannot make mailhook hold more", async () => {
    const hook2 = await startMailhook({ consumers: false });
    try {
      const big = JSON.stringify({ type: "email.delivered", pad: "x".repeat(1024 * 1024) });
      const r = await hook2.post("mailtura", big, { "content-type": "application/json", "x-mailtura-signature": "00" });
      assert.equal(r.status, 413, r.text);
      assert.match(r.json.error.message, /1048576/);
    } finally {
      await hook2.dispose();
    }
  });

  test("10. null in an optional container is accepted (Maileroo event_data, ImprovMX inlines)", async () => {
    const t = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ event_id: "null-data-1", event_time: t, event_type: "delivered", event_data: null, message_id: "<n@x>" });
    const r = await hook.post("maileroo", body, signedHeaders.maileroo(body));
    assert.equal(r.status, 200, r.text);
    const mail = JSON.parse(fixture("improvmx", "unicode"));
    mail.inlines = null;
    mail.attachments = null;
    const i = await hook.post("improvmx", JSON.stringify(mail), IMPROVMX);
    assert.equal(i.status, 200, i.text);
    for (const id of [r.json.ids[0], i.json.ids[0]]) {
      await waitFor(() => origin.deliveries.find((d) => d.id === id), { what: `delivery of ${id}` });
    }
  });
});

describe("settings that break a promise are refused", () => {
  test("5. MAX_EVENT_AGE_SECONDS equal to DEDUPE_TTL_SECONDS (the 300 s clock allowance) and 6. a retention shorter than the schedule", async () => {
    for (const [vars, variable] of [
      [{ MAX_EVENT_AGE_SECONDS: "86400", DEDUPE_TTL_SECONDS: "86400" }, "MAX_EVENT_AGE_SECONDS"],
      [{ LOG_RETENTION_DAYS: "1", RETRY_SCHEDULE_SECONDS: "43200,43200,43200,43200" }, "LOG_RETENTION_DAYS"],
    ]) {
      const hook = await startMailhook({ vars, consumers: false });
      try {
        const health = await hook.request("/healthz");
        assert.equal(health.status, 503, health.text);
        assert.equal(health.json.status, "misconfigured");
        assert.match(health.json.error, new RegExp(variable));
        const body = fixture("improvmx", "sample");
        const r = await hook.post("improvmx", body, IMPROVMX);
        assert.equal(r.status, 503);
      } finally {
        await hook.dispose();
      }
    }
  });
});

describe("settings written as TOML numbers and booleans", () => {
  // Found in issue 14's review: a second executor of the webhook path read only
  // text and structured [vars], so a number or boolean fell back to its default
  // there while the rest of the Worker used the operator's value.
  test("MAX_EVENT_AGE_SECONDS = 3600 and INCLUDE_RAW = false hold on the webhook path", async () => {
    const origin = await startOrigin();
    const hook = await startMailhook({ vars: { MAX_EVENT_AGE_SECONDS: 3600, INCLUDE_RAW: false, ORIGIN_URL: origin.url } });
    try {
      const t = Math.floor(Date.now() / 1000);
      const event = (id, time) => JSON.stringify({ event_id: id, event_time: time, event_type: "delivered", message_id: `<${id}@x>` });
      const old = event("typed-vars-old", t - 7200);
      const stale = await hook.post("maileroo", old, signedHeaders.maileroo(old));
      assert.equal(stale.status, 400, stale.text);
      assert.equal(stale.json.error.code, "stale_event");
      const body = event("typed-vars-new", t);
      const ok = await hook.post("maileroo", body, signedHeaders.maileroo(body));
      assert.equal(ok.status, 200, ok.text);
      await waitFor(() => origin.deliveries.length === 1, { what: "the delivery" });
      const [d] = origin.deliveries;
      assert.equal(d.event.id, ok.json.ids[0]);
      assert.equal(d.event.data.raw, undefined, "no data.raw with INCLUDE_RAW = false");
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });
});

describe("retention", () => {
  test("6. the cron never removes the row or payload of an event that is queued or retrying", async () => {
    const hook = await startMailhook({ consumers: false });
    try {
      const db = await hook.db();
      const r2 = await hook.r2();
      const old = Math.floor(Date.now() / 1000) - 90 * 86400;
      for (const status of ["queued", "retrying", "delivered", "dead"]) {
        const key = `events/evt_retention_${status}.json`;
        await r2.put(key, "{}");
        await db
          .prepare("INSERT INTO events (id, provider, type, received_at, status, attempts, payload_ref, envelope, updated_at) VALUES (?1, 'improvmx', 'email.received', ?2, ?3, 1, ?4, '{}', ?2)")
          .bind(`evt_retention_${status}`, old, status, key)
          .run();
      }
      // A large event stored by this version: its manifest and, beside it, the body.
      await r2.put("events/evt_retention_parts.parts", "MHP1");
      await r2.put("events/evt_retention_parts.body", "{}");
      await db
        .prepare("INSERT INTO events (id, provider, type, received_at, status, attempts, payload_ref, envelope, updated_at) VALUES ('evt_retention_parts', 'improvmx', 'email.received', ?1, 'delivered', 1, 'events/evt_retention_parts.parts', '{}', ?1)")
        .bind(old)
        .run();
      await hook.scheduled();
      for (const key of ["events/evt_retention_parts.parts", "events/evt_retention_parts.body"]) assert.equal(await r2.head(key), null, `${key} removed`);
      const left = (await db.prepare("SELECT id FROM events WHERE id LIKE 'evt_retention_%' ORDER BY id").all()).results.map((r) => r.id);
      assert.deepEqual(left, ["evt_retention_queued", "evt_retention_retrying"]);
      for (const status of ["queued", "retrying"]) assert.ok(await r2.get(`events/evt_retention_${status}.json`), `${status} payload kept`);
      for (const status of ["delivered", "dead"]) assert.equal(await r2.get(`events/evt_retention_${status}.json`), null, `${status} payload removed`);
    } finally {
      await hook.dispose();
    }
  });
});
