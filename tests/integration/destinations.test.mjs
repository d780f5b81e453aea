// Destinations: fan-out with filters to real origins on 127.0.0.1, each with
// its own key, retries, dead letters and circuit breaker.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { admHeaders, fixture, signedHeaders, sleep, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const now = () => Math.floor(Date.now() / 1000);
const key = (label) => "whsec_" + Buffer.from(`destination key ${label}`).toString("base64");

/** A signed provider fixture, fresh in time (and, with `id`, in identity). */
function signed(provider, name, id) {
  const v = JSON.parse(fixture(provider, name));
  if (provider === "mailtura") {
    v.timestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    if (id) v.id = id;
  }
  if (provider === "maileroo") {
    v.event_time = now();
    if (id) v.event_id = id;
  }
  const body = JSON.stringify(v);
  return [provider, body, signedHeaders[provider](body)];
}

const adm = (uid, event = "new") => [
  "adm-tools",
  JSON.stringify({ mailbox: "desk@example.com.ua", uid, tstamp: now(), event, folder: "INBOX", subject: `dest ${uid}` }),
  admHeaders(),
];

/** Origins with their own keys, and mailhook with one destination per origin. */
async function setup(specs, vars = {}) {
  const origins = {};
  const secrets = {};
  const declared = [];
  for (const [name, spec] of Object.entries(specs)) {
    const { respond, ...rest } = spec;
    origins[name] = await startOrigin({ secret: key(name), respond });
    secrets[`DESTINATION_${name.toUpperCase().replace(/-/g, "_")}_SIGNING_SECRET`] = key(name);
    declared.push({ name, url: origins[name].url, ...rest });
  }
  // Without ORIGIN_URL, only the declared destinations exist.
  const hook = await startMailhook({ vars: { ORIGIN_URL: undefined, DESTINATIONS: declared, ...vars }, secrets });
  const close = async () => {
    await hook.dispose();
    for (const o of Object.values(origins)) await o.close();
  };
  return { hook, origins, close };
}

async function post(hook, [provider, body, headers]) {
  const r = await hook.post(provider, body, headers);
  assert.equal(r.status, 200, r.text);
  return r.json.ids[0];
}

const ids = (origin) => origin.deliveries.map((d) => d.id).sort();

describe("destinations", () => {
  test("filters route each provider's events to exactly the destinations that take them", async () => {
    const { hook, origins, close } = await setup({
      crm: { filter: { types: ["email.bounced", "email.complained"] } },
      support: { filter: { providers: ["adm-tools"], types: ["email.received"] } },
      analytics: {},
    });
    try {
      const bounced = await post(hook, signed("mailtura", "bounced", "evt_dest_bounce"));
      const complained = await post(hook, signed("maileroo", "complained", "dest-complaint-1"));
      const delivered = await post(hook, signed("maileroo", "delivered", "dest-delivered-1"));
      const received = await post(hook, adm(501));
      const added = await post(hook, adm(502, "create"));
      const all = [bounced, complained, delivered, received, added].sort();
      await waitFor(() => origins.analytics.deliveries.length === 5 && origins.crm.deliveries.length === 2 && origins.support.deliveries.length === 1, {
        what: "every routed delivery",
      });
      await sleep(1500); // nothing else may arrive
      assert.deepEqual(ids(origins.crm), [bounced, complained].sort());
      assert.deepEqual(ids(origins.support), [received]);
      assert.deepEqual(ids(origins.analytics), all);
      for (const o of Object.values(origins)) assert.equal(o.invalid.length, 0, "each destination's deliveries verify with its own key");
      // The same webhook-id everywhere: it is the event's identity.
      const at = (o, id) => o.deliveries.find((d) => d.id === id);
      assert.equal(at(origins.crm, bounced).headers["webhook-id"], at(origins.analytics, bounced).headers["webhook-id"]);
      // The event log: one delivery row per destination that took the event.
      const event = (await hook.admin(`/admin/events/${bounced}`)).json;
      assert.deepEqual(event.deliveries.map((d) => [d.destination, d.status]), [["analytics", "delivered"], ["crm", "delivered"]]);
      assert.deepEqual(new Set(event.delivery_attempts.map((a) => a.destination)), new Set(["analytics", "crm"]));
      const crm = (await hook.admin("/admin/events?destination=crm")).json;
      assert.deepEqual(crm.events.map((e) => e.id).sort(), [bounced, complained].sort());
      const health = (await hook.request("/healthz")).json;
      assert.deepEqual(Object.keys(health.destinations).sort(), ["analytics", "crm", "support"]);
      assert.equal(health.destinations.crm.circuit, "closed");
      assert.equal(health.destinations.crm.url, undefined, "the public /healthz shows no URL (a path can be a secret)");
      const admin = (await hook.admin("/admin/destinations")).json.destinations;
      assert.equal(admin.find((d) => d.name === "crm").url, origins.crm.url);
    } finally {
      await close();
    }
  });

  test("one destination answering 500, hanging or 410 does not delay or dead-letter the other two", { timeout: 120_000 }, async () => {
    const { hook, origins, close } = await setup(
      {
        a: {},
        b: {},
        down: { respond: () => 500, circuit_failures: 1000 },
        slow: { respond: () => ({ hang: true }), timeout_seconds: 1 },
        gone: { respond: () => 410 },
      },
      { RETRY_SCHEDULE_SECONDS: "1,1" },
    );
    try {
      const started = Date.now();
      const sent = [];
      for (let uid = 600; uid < 610; uid++) sent.push(await post(hook, adm(uid)));
      await waitFor(() => origins.a.deliveries.length === 10 && origins.b.deliveries.length === 10, { what: "the healthy destinations" });
      const healthyMs = Date.now() - started;
      assert.ok(healthyMs < 8000, `the healthy destinations took ${healthyMs} ms`);
      // The failing ones end dead, each on its own schedule (410 at once; 500 and timeouts after 3 attempts).
      const dead = async (name) => (await hook.deliveries(name)).filter((d) => d.status === "dead");
      await waitFor(async () => (await dead("gone")).length === 10 && (await dead("down")).length === 10 && (await dead("slow")).length === 10, {
        ms: 60_000,
        what: "the failing destinations' dead letters",
      });
      assert.ok((await dead("gone")).every((d) => d.attempts === 1 && d.last_status === 410));
      assert.ok((await dead("down")).every((d) => d.attempts === 3 && d.last_status === 500));
      assert.ok((await dead("slow")).every((d) => d.attempts === 3 && /timed out/.test(d.last_error)));
      for (const name of ["a", "b"]) {
        assert.deepEqual(ids(origins[name]), sent.sort());
        assert.equal(origins[name].attempts.length, 10, `${name} attempted once per event`);
        assert.equal((await hook.deliveries(name)).filter((d) => d.status !== "delivered").length, 0);
      }
      // Dead at three destinations, delivered at two: the event's summary is dead, and each is replayable.
      const listed = (await hook.admin("/admin/events?status=dead&destination=gone")).json;
      assert.equal(listed.total, 10);
      assert.equal((await hook.admin("/admin/events?status=dead&destination=a")).json.total, 0);
    } finally {
      await close();
    }
  });

  test("a destination that hangs moves to the slow lane: the healthy one's 30 events are not held up by its timeouts", { timeout: 120_000 }, async () => {
    const { hook, origins, close } = await setup({ a: {}, hanging: { respond: () => ({ hang: true }), timeout_seconds: 5, circuit_failures: 1000 } });
    try {
      const started = Date.now();
      for (let uid = 650; uid < 680; uid++) await post(hook, adm(uid));
      await waitFor(() => origins.a.deliveries.length === 30, { ms: 60_000, what: "the healthy destination's 30 deliveries" });
      const ms = Date.now() - started;
      // One batch may wait for one round of timeouts before the lane is known; in one lane, six batches would wait 30 s.
      assert.ok(ms < 12_000, `the healthy destination took ${ms} ms`);
      await waitFor(() => hook.logs.some((l) => l.includes('"batch"') && l.includes("mailhook-events-slow")), { ms: 30_000, what: "a batch of the slow lane" });
    } finally {
      await close();
    }
  });

  test("the circuit opens after N failures, holds deliveries without spending their retries, and closes on the first success", { timeout: 120_000 }, async () => {
    let down = true;
    const { hook, origins, close } = await setup(
      { flaky: { respond: () => (down ? 503 : 204), circuit_failures: 3, circuit_probe_seconds: 1 } },
      // Three retries: without the breaker, 8 s of outage would kill every event.
      { RETRY_SCHEDULE_SECONDS: "1,1,1" },
    );
    try {
      const sent = [];
      for (let uid = 700; uid < 706; uid++) sent.push(await post(hook, adm(uid)));
      await waitFor(async () => (await hook.request("/healthz")).json.destinations.flaky.circuit === "open", { what: "the circuit to open" });
      const admin = (await hook.admin("/admin/destinations")).json.destinations[0];
      assert.equal(admin.circuit.state, "open");
      assert.ok(admin.circuit.failures >= 3);
      assert.ok(admin.circuit.next_probe);
      await waitFor(async () => (await hook.deliveries("flaky")).some((d) => d.status === "held"), { what: "a held delivery" });
      // While open: three probes per second, not one attempt per delivery.
      const before = origins.flaky.attempts.length;
      await sleep(4000);
      const during = origins.flaky.attempts.length - before;
      assert.ok(during <= 15, `${during} attempts in 4 s while open`);
      down = false;
      await waitFor(() => new Set(ids(origins.flaky)).size === 6, { ms: 30_000, what: "the held deliveries to flow after the probe" });
      assert.deepEqual(ids(origins.flaky), sent.sort(), "each delivered once");
      assert.equal((await hook.deadLetters()).length, 0, "held deliveries did not spend their schedule");
      const health = (await hook.request("/healthz")).json;
      assert.equal(health.destinations.flaky.circuit, "closed");
      assert.equal(health.destinations.flaky.failures, 0);
      assert.ok(hook.logs.some((l) => l.includes('"circuit_opened"')) && hook.logs.some((l) => l.includes('"circuit_closed"')));
    } finally {
      await close();
    }
  });

  test("poison events do not hold healthy ones behind an open circuit: they die on their own schedule, the rest flow", { timeout: 120_000 }, async () => {
    // The destination refuses some events every time (uid 1601 to 1604) and takes the rest.
    const poisoned = (d) => /"uid":160\d/.test(d.body);
    const { hook, origins, close } = await setup(
      { picky: { respond: (d) => (poisoned(d) ? 500 : 204), circuit_failures: 3, circuit_probe_seconds: 2 } },
      { RETRY_SCHEDULE_SECONDS: "1,1,1,1" },
    );
    try {
      const poison = [];
      for (let uid = 1601; uid <= 1604; uid++) poison.push(await post(hook, adm(uid)));
      await waitFor(async () => (await hook.request("/healthz")).json.destinations.picky.circuit === "open", { what: "the circuit to open" });
      const healthy = [];
      for (let uid = 1611; uid <= 1616; uid++) healthy.push(await post(hook, adm(uid)));
      const start = Date.now();
      await waitFor(() => healthy.every((id) => origins.picky.deliveries.some((d) => d.id === id)), { ms: 40_000, what: "the healthy events, within a few probe intervals" });
      const took = Date.now() - start;
      await waitFor(async () => (await hook.deliveries("picky")).filter((d) => d.status === "dead").length === 4, { ms: 60_000, what: "the poison events dead" });
      const dead = (await hook.deliveries("picky")).filter((d) => d.status === "dead");
      assert.deepEqual(dead.map((d) => d.event_id).sort(), poison.sort());
      assert.ok(dead.every((d) => d.attempts === 5), `each poison event dies after its schedule: ${dead.map((d) => d.attempts)}`);
      assert.deepEqual(ids(origins.picky), healthy.sort(), "each healthy event delivered once");
      console.log(`healthy events delivered ${took} ms after the circuit opened (probe interval 2 s, holds up to 8 s)`);
    } finally {
      await close();
    }
  });

  test("an origin that fails every event's first two attempts: the circuit lets events through and each arrives once", { timeout: 120_000 }, async () => {
    // Found from outside with one probe an interval: every probe was some event's first attempt, and nothing was delivered.
    const tries = new Map();
    const respond = (d) => {
      tries.set(d.id, (tries.get(d.id) ?? 0) + 1);
      return tries.get(d.id) <= 2 ? 500 : 204;
    };
    const { hook, origins, close } = await setup({ twice: { respond, circuit_failures: 3, circuit_probe_seconds: 2 } }, { RETRY_SCHEDULE_SECONDS: "1,1,1,1,1" });
    try {
      const sent = [];
      for (let uid = 1701; uid <= 1716; uid++) sent.push(await post(hook, adm(uid)));
      await waitFor(() => new Set(ids(origins.twice)).size === 16, { ms: 60_000, what: "every event, on its third attempt" });
      assert.deepEqual(ids(origins.twice), sent.sort(), "each delivered once");
      assert.equal((await hook.deadLetters()).length, 0);
    } finally {
      await close();
    }
  });

  test("replay to one destination, to all, and in bulk per destination", { timeout: 60_000 }, async () => {
    let refusing = true;
    const { hook, origins, close } = await setup({
      crm: { respond: () => (refusing ? 410 : 204) },
      desk: { filter: { providers: ["adm-tools"] } },
      bounces: { filter: { types: ["email.bounced"] } },
    });
    try {
      const id = await post(hook, adm(801));
      const other = await post(hook, adm(802));
      await waitFor(async () => (await hook.deliveries("crm")).filter((d) => d.status === "dead").length === 2, { what: "two dead deliveries at crm" });
      await waitFor(() => origins.desk.deliveries.length === 2);
      refusing = false;
      const one = await hook.admin(`/admin/events/${id}/replay?destination=crm`, { method: "POST" });
      assert.equal(one.status, 202, one.text);
      assert.deepEqual(one.json.destinations, ["crm"]);
      await waitFor(() => origins.crm.deliveries.some((d) => d.id === id), { what: "the replay at crm" });
      assert.equal(origins.desk.deliveries.filter((d) => d.id === id).length, 1, "desk got no second copy");
      // Refused: a destination that does not exist, or whose filter does not take the event.
      const unknown = await hook.admin(`/admin/events/${id}/replay?destination=nope`, { method: "POST" });
      assert.equal(unknown.status, 400);
      assert.match(unknown.json.error.message, /crm, desk, bounces/);
      const filtered = await hook.admin(`/admin/events/${id}/replay?destination=bounces`, { method: "POST" });
      assert.equal(filtered.status, 400);
      assert.match(filtered.json.error.message, /filter/);
      // Bulk: every dead delivery at crm (the other event).
      const bulk = await hook.admin("/admin/replay?status=dead&destination=crm", { method: "POST" });
      assert.equal(bulk.status, 202, bulk.text);
      assert.deepEqual(bulk.json.ids, [other]);
      assert.equal(bulk.json.remaining, 0);
      await waitFor(() => origins.crm.deliveries.some((d) => d.id === other), { what: "the bulk replay at crm" });
      // Recorded too: a delivery still on its way is not replayed again (it would be sent twice).
      await waitFor(async () => (await hook.admin(`/admin/events/${other}`)).json.status === "delivered", { what: "the bulk replay recorded" });
      // To all: every destination whose filter takes it, again.
      const all = await hook.admin(`/admin/events/${other}/replay`, { method: "POST" });
      assert.deepEqual(all.json.destinations, ["crm", "desk"]);
      await waitFor(() => origins.desk.deliveries.filter((d) => d.id === other).length === 2, { what: "the replay to all" });
      assert.equal(origins.bounces.attempts.length, 0);
      const shown = await waitFor(async () => {
        const j = (await hook.admin(`/admin/events/${other}`)).json;
        return j.status === "delivered" ? j : null;
      }, { what: "both replays recorded" });
      assert.deepEqual(shown.deliveries.map((d) => d.destination), ["crm", "desk"]);
    } finally {
      await close();
    }
  });

  test("a filter on recipient tags takes a ticket's reply, with its thread, and nothing untagged, also in a bulk replay", { timeout: 60_000 }, async () => {
    const { hook, origins, close } = await setup({
      tickets: { filter: { recipient_tags: ["ticket-*"] } },
      bounces: { filter: { types: ["email.bounced"] } },
    });
    try {
      const reply = [
        "From: Ann <ann@example.net>",
        "To: support+Ticket-4121@mailhook.test",
        "Subject: Re: my order",
        "Message-ID: <r2@mail.example.net>",
        "In-Reply-To: (ann's reply) <r1@desk.example.com>",
        "References: <r0@mail.example.net>",
        " <r1@desk.example.com>",
        "",
        "Still broken.",
        "",
      ].join("\r\n");
      const taken = await hook.email(Buffer.from(reply), { to: "support+Ticket-4121@mailhook.test" });
      assert.equal(taken.status, 200, taken.text);
      // adm.tools `new`: its mailbox is the recipient. One tagged otherwise, one untagged: neither is for tickets.
      const news = await post(hook, ["adm-tools", JSON.stringify({ mailbox: "desk+news@example.com.ua", uid: 901, tstamp: now(), event: "new", folder: "INBOX" }), admHeaders()]);
      const plain = await post(hook, adm(902));
      const got = await waitFor(() => origins.tickets.deliveries[0], { what: "the reply at tickets" });
      assert.equal(got.event.data.recipient_tag, "Ticket-4121");
      assert.deepEqual(got.event.data.thread, {
        id: "<r0@mail.example.net>",
        in_reply_to: "<r1@desk.example.com>",
        references: ["<r0@mail.example.net>", "<r1@desk.example.com>"],
      });
      // The event log finds the conversation by its id, with or without its brackets.
      const byThread = await hook.admin("/admin/events?thread=r0%40mail.example.net");
      assert.deepEqual(byThread.json.events.map((e) => e.id), [got.id]);
      // The other two are unrouted (nothing takes them): a bulk replay picks neither, in SQL as in Rust.
      await waitFor(async () => (await hook.admin("/admin/events?status=unrouted")).json.total === 2, { what: "two unrouted events" });
      const bulk = await hook.admin("/admin/replay?status=unrouted", { method: "POST" });
      assert.equal(bulk.status, 202, bulk.text);
      assert.deepEqual(bulk.json.ids, []);
      assert.equal(bulk.json.skipped.filter_no_longer_takes, 2, "the SQL reads the tag filter as the Rust does");
      const refused = await hook.admin(`/admin/events/${news}/replay?destination=tickets`, { method: "POST" });
      assert.equal(refused.status, 400);
      assert.match(refused.json.error.message, /filter/);
      await sleep(500);
      assert.deepEqual(ids(origins.tickets), [got.id]);
      assert.equal(origins.bounces.attempts.length, 0);
      assert.ok(plain);
      const shown = (await hook.admin("/admin/destinations")).json.destinations.find((d) => d.name === "tickets");
      assert.deepEqual(shown.filter.recipient_tags, ["ticket-*"], "the operator sees the tag filter");
    } finally {
      await close();
    }
  });

  test("one destination's secret rotates without touching the others", async () => {
    const next = key("crm-next");
    const crm = await startOrigin({ secret: next });
    const desk = await startOrigin({ secret: key("desk") });
    const hook = await startMailhook({
      vars: { ORIGIN_URL: undefined, DESTINATIONS: [{ name: "crm", url: crm.url }, { name: "desk", url: desk.url }] },
      secrets: { DESTINATION_CRM_SIGNING_SECRET: `${key("crm")}, ${next}`, DESTINATION_DESK_SIGNING_SECRET: key("desk") },
    });
    try {
      const id = await post(hook, adm(901));
      await waitFor(() => crm.deliveries.length === 1 && desk.deliveries.length === 1);
      assert.equal(crm.deliveries[0].headers["webhook-signature"].split(" ").length, 2, "one signature per key of crm");
      assert.equal(desk.deliveries[0].headers["webhook-signature"].split(" ").length, 1);
      assert.equal(crm.deliveries[0].id, id);
    } finally {
      await hook.dispose();
      await crm.close();
      await desk.close();
    }
  });

  test("ORIGIN_URL beside DESTINATIONS stays the destination `origin`, taking everything", async () => {
    const origin = await startOrigin();
    const crm = await startOrigin({ secret: key("crm") });
    const hook = await startMailhook({
      vars: { ORIGIN_URL: origin.url, DESTINATIONS: [{ name: "crm", url: crm.url, filter: { types: ["email.bounced"] } }] },
      secrets: { DESTINATION_CRM_SIGNING_SECRET: key("crm") },
    });
    try {
      const id = await post(hook, adm(902));
      await waitFor(() => origin.deliveries.length === 1);
      assert.equal(origin.deliveries[0].id, id);
      assert.equal(crm.attempts.length, 0);
      assert.deepEqual(Object.keys((await hook.request("/healthz")).json.destinations).sort(), ["crm", "origin"]);
    } finally {
      await hook.dispose();
      await origin.close();
      await crm.close();
    }
  });

  test("a bad declaration is refused at startup with a 503 naming the destination and the fix", async () => {
    const good = { DESTINATION_CRM_SIGNING_SECRET: key("crm") };
    for (const [destinations, secrets, message] of [
      [[{ name: "crm", url: "https://crm.example/", timeout: 5 }], good, /destination "crm": unknown field `timeout`/],
      [[{ name: "crm", url: "crm.example/hooks" }], good, /destination "crm": its URL is not an absolute http/],
      [[{ name: "crm", url: "https://a.example/" }, { name: "crm", url: "https://b.example/" }], good, /destination "crm": the name is used twice/],
      [[{ name: "crm", url: "https://crm.example/", filter: { types: ["email.bounce"] } }], good, /destination "crm": filter.types: "email.bounce" matches no event type/],
      [[{ name: "crm", url: "https://crm.example/", filter: { providers: ["improvmx"], types: ["email.bounced"] } }], good, /matches no event any of its providers sends/],
      [[{ name: "crm", url: "https://crm.example/" }], {}, /destination "crm": its signing secret DESTINATION_CRM_SIGNING_SECRET is not set; run `npm run deploy`, which generates it, or `wrangler secret put DESTINATION_CRM_SIGNING_SECRET`/],
      ['[{"name": "crm"', good, /DESTINATIONS: is not a list of destinations/],
      [[{ name: "crm", url: "http://127.0.0.1:99999/x" }], good, /destination "crm": .* the port must be a number from 1 to 65535/],
    ]) {
      const hook = await startMailhook({ vars: { DESTINATIONS: destinations }, secrets, consumers: false });
      try {
        const health = await hook.request("/healthz");
        assert.equal(health.status, 503);
        assert.match(health.json.error, message);
        const r = await hook.post(...adm(903));
        assert.equal(r.status, 503);
        assert.match(r.json.error.message, message);
        for (const d of typeof destinations === "string" ? [] : destinations) {
          assert.ok(!health.text.includes(d.url), "a URL (it can hold a secret) never reaches the public answer");
        }
      } finally {
        await hook.dispose();
      }
    }
  });

  test("review: 0.2 messages (no destination) fan out, and an in-flight 0.2 event does not wait for a removed origin", async () => {
    const { hook, origins, close } = await setup({ a: { filter: { providers: ["adm-tools"] } }, b: { filter: { types: ["mailbox.*"] } } });
    try {
      const seed = await post(hook, adm(1001));
      await waitFor(() => origins.a.deliveries.length === 1);
      const event = JSON.parse(origins.a.deliveries[0].body);
      const db = await hook.db();
      const envelope = (id, attempt) => ({ id, provider: "adm-tools", type: "email.received", attempt, received_at: now() - 60, event: { ...event, id } });
      // In flight in 0.2 at attempt 3: the rows migration 0003 makes of it.
      const inflight = "evt_review_inflight02";
      await db.prepare("INSERT INTO events (id, provider, type, received_at, status, attempts, envelope, updated_at) VALUES (?1, 'adm-tools', 'email.received', ?2, 'retrying', 3, ?3, ?2)").bind(inflight, now() - 60, JSON.stringify(envelope(inflight, 3))).run();
      await db.prepare("INSERT INTO deliveries (event_id, destination, status, attempts, last_status, updated_at) VALUES (?1, 'origin', 'retrying', 3, 500, ?2)").bind(inflight, now() - 60).run();
      await (await hook.mf.getQueueProducer("EVENTS")).send(JSON.stringify(envelope(inflight, 3)), { contentType: "text" });
      // A 0.2 message that the queue gave up on: dead at each destination that takes it.
      const gaveUp = "evt_review_dlq02";
      await (await hook.mf.getQueueProducer("DEAD_LETTERS")).send(JSON.stringify(envelope(gaveUp, 1)), { contentType: "text" });
      await waitFor(() => origins.a.deliveries.some((d) => d.id === inflight), { what: "the 0.2 event at a" });
      const shown = await waitFor(async () => {
        const j = (await hook.admin(`/admin/events/${inflight}`)).json;
        return j.status === "delivered" ? j : null;
      }, { what: "the 0.2 event delivered, not waiting for origin" });
      assert.deepEqual(shown.deliveries.map((d) => [d.destination, d.status, d.attempts]), [["a", "delivered", 1]], "a new destination starts at its first attempt");
      await waitFor(async () => (await hook.deliveries("a")).some((d) => d.event_id === gaveUp && d.status === "dead"), { what: "the 0.2 dead letter at a" });
      assert.equal(origins.b.attempts.length, 0);
      const bulk = await hook.admin("/admin/replay?status=dead", { method: "POST" });
      assert.deepEqual(bulk.json.ids, [gaveUp]);
      await waitFor(() => origins.a.deliveries.some((d) => d.id === gaveUp), { what: "the replayed 0.2 dead letter" });
      assert.ok(seed);
      // A 0.2 message that no destination takes now: kept as unrouted, not waiting for `origin`.
      const nobody = "evt_review_nobody02";
      const create = { ...envelope(nobody, 1), type: "mailbox.message_added" };
      await db.prepare("INSERT INTO events (id, provider, type, received_at, status, attempts, envelope, updated_at) VALUES (?1, 'adm-tools', 'mailbox.message_added', ?2, 'retrying', 1, ?3, ?2)").bind(nobody, now() - 60, JSON.stringify(create)).run();
      await db.prepare("INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES (?1, 'origin', 'retrying', 1, ?2)").bind(nobody, now() - 60).run();
      // A Mailtura email.sent: neither a (adm-tools only) nor b (mailbox.*) takes it.
      await (await hook.mf.getQueueProducer("EVENTS")).send(JSON.stringify({ ...create, provider: "mailtura", type: "email.sent" }), { contentType: "text" });
      await waitFor(async () => (await db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = ?1").bind(nobody).first()).n === 0, { what: "the origin row of the unrouted 0.2 event dropped" });
      assert.ok(hook.logs.some((l) => l.includes('"unrouted"') && l.includes(nobody)));
      assert.equal((await hook.admin(`/admin/events/${nobody}`)).json.status, "unrouted");
      // The 0.2 dead letter left no `origin` row behind either.
      assert.equal((await db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = ?1 AND destination = 'origin'").bind(gaveUp).first()).n, 0);
    } finally {
      await close();
    }
  });

  test("review: bulk replay picks only what a destination still takes, so skipped rows never block a page", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "mailhook-review-"));
    let refusing = true;
    const a = await startOrigin({ secret: key("a"), respond: () => (refusing ? 410 : 204) });
    const start = (filter) =>
      startMailhook({ vars: { ORIGIN_URL: undefined, DESTINATIONS: [{ name: "a", url: a.url, ...(filter ? { filter } : {}) }] }, secrets: { DESTINATION_A_SIGNING_SECRET: key("a") }, persist: dir });
    try {
      let hook = await start();
      for (let uid = 1301; uid <= 1303; uid++) await post(hook, adm(uid, "create"));
      const received = [await post(hook, adm(1304)), await post(hook, adm(1305))];
      await waitFor(async () => (await hook.deliveries("a")).filter((d) => d.status === "dead").length === 5, { what: "five dead" });
      await hook.dispose();
      // The filter narrows to email.*: the three mailbox.* dead rows are no longer a's to replay.
      refusing = false;
      hook = await start({ types: ["email.*"] });
      try {
        const r = await hook.admin("/admin/replay?status=dead&limit=2", { method: "POST" });
        assert.equal(r.status, 202, r.text);
        assert.deepEqual(r.json.ids.sort(), received.sort());
        assert.equal(r.json.remaining, 0);
        assert.equal(r.json.skipped.filter_no_longer_takes, 3);
        await waitFor(() => a.deliveries.length === 2, { what: "the two replays" });
      } finally {
        await hook.dispose();
      }
    } finally {
      await a.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("bulk replay of status=unrouted sends each event to the destinations that take it now, once", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "mailhook-unrouted-"));
    const a = await startOrigin({ secret: key("a") });
    const start = (filter) =>
      startMailhook({ vars: { ORIGIN_URL: undefined, DESTINATIONS: [{ name: "a", url: a.url, ...(filter ? { filter } : {}) }] }, secrets: { DESTINATION_A_SIGNING_SECRET: key("a") }, persist: dir });
    try {
      let hook = await start({ types: ["email.bounced"] });
      const received = [await post(hook, adm(1401)), await post(hook, adm(1402))];
      await waitFor(async () => (await hook.admin("/admin/events?status=unrouted")).json.total === 2, { what: "two unrouted" });
      const nobody = await hook.admin("/admin/replay?status=unrouted", { method: "POST" });
      assert.equal(nobody.status, 202, nobody.text);
      assert.equal(nobody.json.count, 0, "no destination takes them yet");
      assert.equal(nobody.json.skipped.filter_no_longer_takes, 2);
      await hook.dispose();
      hook = await start();
      try {
        const one = await hook.admin("/admin/replay?status=unrouted&destination=a", { method: "POST" });
        assert.equal(one.status, 400, "sent to one destination, it would be hidden from the others that take it");
        assert.match(one.json.error.message, /leave out destination=a/);
        const r = await hook.admin("/admin/replay?status=unrouted", { method: "POST" });
        assert.equal(r.status, 202, r.text);
        assert.deepEqual(r.json.ids.sort(), received.sort());
        assert.deepEqual(r.json.deliveries.map((d) => d.destination), ["a", "a"]);
        assert.equal(r.json.remaining, 0);
        await waitFor(() => a.deliveries.length === 2, { what: "the two replays" });
        await waitFor(async () => (await hook.admin("/admin/events?status=delivered")).json.total === 2, { what: "both delivered" });
        assert.equal((await hook.admin("/admin/replay?status=unrouted", { method: "POST" })).json.count, 0);
        assert.deepEqual(ids(a), received.sort());
      } finally {
        await hook.dispose();
      }
    } finally {
      await a.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a bulk replay page stops at 8 MiB of stored events, whatever its limit, and the rest is left for the next", { timeout: 60_000 }, async () => {
    let refusing = true;
    const { hook, origins, close } = await setup({ a: { respond: () => (refusing ? 410 : 204) } });
    try {
      const id = await post(hook, adm(1801));
      await waitFor(async () => (await hook.deliveries("a")).some((d) => d.status === "dead"), { what: "a dead delivery" });
      // Twelve dead deliveries whose stored events take 1 MB each (a large inline event's envelope, padded).
      const db = await hook.db();
      const { envelope } = await db.prepare("SELECT envelope FROM events WHERE id = ?1").bind(id).first();
      const copies = [];
      for (let i = 0; i < 12; i++) {
        const copy = `evt_big_${i}`;
        const padded = JSON.stringify({ ...JSON.parse(envelope), id: copy, pad: "x".repeat(1_000_000) });
        copies.push(copy);
        await db.batch([
          db.prepare("INSERT INTO events (id, provider, type, received_at, status, attempts, envelope, updated_at) SELECT ?1, provider, type, received_at + ?2, 'dead', 1, ?3, updated_at FROM events WHERE id = ?4").bind(copy, i + 1, padded, id),
          db.prepare("INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES (?1, 'a', 'dead', 1, 0)").bind(copy),
        ]);
      }
      refusing = false;
      const first = await hook.admin("/admin/replay?status=dead&limit=1000", { method: "POST" });
      assert.equal(first.status, 202, first.text);
      // The small event, then the large ones while fewer than 8 MiB came before: ten.
      assert.equal(first.json.count, 10, `a page of about 8 MiB: ${first.json.count}`);
      assert.equal(first.json.remaining, 13 - first.json.count);
      const second = await hook.admin(`/admin/replay?status=dead&limit=1000&before=${encodeURIComponent(first.json.before)}`, { method: "POST" });
      assert.equal(first.json.count + second.json.count, 13);
      await waitFor(() => origins.a.deliveries.length === 13, { ms: 30_000, what: "the thirteen replays" });
      assert.deepEqual(ids(origins.a), [id, ...copies].sort());
    } finally {
      await close();
    }
  });

  test("two bulk replays at once never pick, or send, the same delivery", { timeout: 60_000 }, async () => {
    let refusing = true;
    const { hook, origins, close } = await setup({ a: { respond: () => (refusing ? 410 : 204) } });
    try {
      const sent = [];
      for (let uid = 1501; uid <= 1512; uid++) sent.push(await post(hook, adm(uid)));
      await waitFor(async () => (await hook.deliveries("a")).filter((d) => d.status === "dead").length === 12, { what: "twelve dead" });
      refusing = false;
      const [x, y] = await Promise.all([1, 2].map(() => hook.admin("/admin/replay?status=dead&limit=1000", { method: "POST" })));
      assert.equal(x.status, 202, x.text);
      assert.equal(y.status, 202, y.text);
      const picked = [...x.json.deliveries, ...y.json.deliveries].map((d) => d.id).sort();
      assert.deepEqual(picked, sent.sort(), "each dead delivery picked by exactly one of the two");
      await waitFor(() => origins.a.deliveries.length === 12, { what: "the twelve replays" });
      await sleep(500);
      assert.deepEqual(ids(origins.a), sent.sort(), "each delivered once");
    } finally {
      await close();
    }
  });

  test("review: an event no destination takes is accepted, kept as unrouted, and listed", async () => {
    const { hook, origins, close } = await setup({ crm: { filter: { types: ["email.bounced"] } } });
    try {
      const request = adm(1101);
      const id = await post(hook, request);
      const listed = await waitFor(async () => {
        const j = (await hook.admin("/admin/events?status=unrouted")).json;
        return j.total === 1 ? j : null;
      }, { what: "the unrouted event in the log" });
      assert.equal(listed.events[0].id, id);
      assert.deepEqual(listed.events[0].deliveries, []);
      const replay = await hook.admin(`/admin/events/${id}/replay`, { method: "POST" });
      assert.equal(replay.status, 400);
      assert.match(replay.json.error.message, /no destination's filter takes email.received events from adm-tools/);
      assert.equal(origins.crm.attempts.length, 0);
      assert.equal((await hook.post(...request)).json.status, "duplicate");
    } finally {
      await close();
    }
  });

  test("review: bulk replay with a cut-off ends, replays each dead delivery once, and counts what is left", async () => {
    const { hook, origins, close } = await setup({ gone: { respond: () => 410 } });
    try {
      for (let uid = 1201; uid <= 1205; uid++) await post(hook, adm(uid));
      await waitFor(async () => (await hook.deliveries("gone")).filter((d) => d.status === "dead").length === 5, { what: "five dead deliveries" });
      const before = new Date(Date.now() + 1000).toISOString().replace(/\.\d+Z$/, "Z");
      const first = await hook.admin(`/admin/replay?status=dead&limit=2&before=${encodeURIComponent(before)}`, { method: "POST" });
      assert.equal(first.json.count, 2);
      assert.equal(first.json.remaining, 3, "the two replayed are queued now");
      assert.equal(first.json.before, before, "the cut-off it used");
      const inFlight = await hook.admin("/admin/replay?status=retrying", { method: "POST" });
      assert.equal(inFlight.status, 400, "a delivery still on its way is not replayed twice");
      let rounds = 1;
      let replayed = 2;
      for (;;) {
        // Each replay fails again (410) and dies after the cut-off, so it is not picked again.
        await sleep(1500);
        const r = await hook.admin(`/admin/replay?status=dead&limit=2&before=${encodeURIComponent(before)}`, { method: "POST" });
        rounds += 1;
        replayed += r.json.count;
        if (r.json.count === 0 || r.json.remaining === 0) break;
        assert.ok(rounds < 10, "the loop ends");
      }
      assert.equal(replayed, 5);
      await waitFor(() => origins.gone.attempts.length === 10, { what: "each replay attempted once" });
      const counts = new Map();
      for (const a of origins.gone.attempts) counts.set(a.id, (counts.get(a.id) ?? 0) + 1);
      assert.deepEqual([...counts.values()], [2, 2, 2, 2, 2]);
    } finally {
      await close();
    }
  });
});
