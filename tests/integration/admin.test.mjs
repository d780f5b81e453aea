// The operator API: auth, filters, paging with a total, one event with its
// attempts, replay of a dead event after the origin recovers, retention.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { admHeaders, signedHeaders, sleep, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const adm = (uid, event = "new") =>
  JSON.stringify({ mailbox: "ops@example.com.ua", uid, tstamp: 1731402000 + uid, event, folder: "INBOX" });

describe("admin API", () => {
  let origin, hook;
  let failing = true; // uid 7 is refused permanently until the origin "recovers"
  before(async () => {
    origin = await startOrigin({ respond: (d) => (d.event.data.mailbox?.uid === "7" && failing ? 410 : 204) });
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url } });
    for (let uid = 1; uid <= 12; uid++) {
      const r = await hook.post("adm-tools", adm(uid, uid % 3 === 0 ? "create" : "new"), admHeaders());
      assert.equal(r.status, 200);
    }
    const t = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ event_id: "adm-test-1", event_time: t, event_type: "delivered", message_id: "<a@b>" });
    assert.equal((await hook.post("maileroo", body, signedHeaders.maileroo(body))).status, 200);
    await waitFor(async () => (await hook.admin("/admin/events?status=delivered")).json?.total === 12, { what: "12 deliveries" });
    await waitFor(async () => (await hook.deadLetters()).length === 1, { what: "the dead letter" });
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
  });

  test("without the token 401, with a wrong one 401, without ADMIN_TOKEN configured 404", async () => {
    assert.equal((await hook.admin("/admin/events", { token: null })).status, 401);
    const wrong = await hook.admin("/admin/events", { token: "nope" });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error.code, "unauthorized");
    const off = await startMailhook({ secrets: { ADMIN_TOKEN: undefined } });
    try {
      assert.equal((await off.admin("/admin/events")).status, 404);
    } finally {
      await off.dispose();
    }
  });

  test("filters by provider, type and status, pages newest first with a total", async () => {
    const all = await hook.admin("/admin/events?limit=5&page=1");
    assert.equal(all.status, 200);
    assert.equal(all.json.total, 13);
    assert.equal(all.json.events.length, 5);
    const page3 = await hook.admin("/admin/events?limit=5&page=3");
    assert.equal(page3.json.events.length, 3);
    const ids = new Set([...all.json.events, ...(await hook.admin("/admin/events?limit=5&page=2")).json.events, ...page3.json.events].map((e) => e.id));
    assert.equal(ids.size, 13, "pages do not overlap");
    const times = all.json.events.map((e) => e.received_at);
    assert.deepEqual([...times].sort().reverse(), times, "newest first");

    const maileroo = await hook.admin("/admin/events?provider=maileroo");
    assert.equal(maileroo.json.total, 1);
    assert.equal(maileroo.json.events[0].type, "email.delivered");
    const created = await hook.admin("/admin/events?type=mailbox.message_added");
    assert.equal(created.json.total, 4);
    const dead = await hook.admin("/admin/events?status=dead");
    assert.equal(dead.json.total, 1);
    assert.equal(dead.json.events[0].last_status, 410);
    assert.match(dead.json.events[0].updated_at, /^\d{4}-\d\d-\d\dT/, "when it died");
    const today = new Date().toISOString().slice(0, 10);
    assert.equal((await hook.admin(`/admin/events?from=${today}&to=${today}`)).json.total, 13);
    assert.equal((await hook.admin("/admin/events?to=2020-01-01")).json.total, 0);
    const bad = await hook.admin("/admin/events?limit=5000");
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /limit/);
  });

  test("one event with its delivery attempts and the event itself", async () => {
    const [dead] = (await hook.admin("/admin/events?status=dead")).json.events;
    const one = await hook.admin(`/admin/events/${dead.id}`);
    assert.equal(one.status, 200);
    assert.equal(one.json.id, dead.id);
    assert.equal(one.json.delivery_attempts.length, 1);
    assert.equal(one.json.delivery_attempts[0].status_code, 410);
    assert.equal(one.json.event.data.mailbox.uid, "7");
    assert.equal((await hook.admin("/admin/events/evt_missing")).status, 404);
  });

  test("a dead event replayed after the origin recovers is delivered once", async () => {
    const [dead] = (await hook.admin("/admin/events?status=dead")).json.events;
    failing = false;
    const r = await hook.admin(`/admin/events/${dead.id}/replay`, { method: "POST" });
    assert.equal(r.status, 202);
    assert.deepEqual(r.json, { status: "replayed", ids: [dead.id], destinations: ["origin"] });
    await waitFor(() => origin.deliveries.find((d) => d.id === dead.id), { what: "the replayed delivery" });
    await sleep(2500);
    assert.equal(origin.deliveries.filter((d) => d.id === dead.id).length, 1);
    const after = await hook.admin(`/admin/events/${dead.id}`);
    assert.equal(after.json.status, "delivered");
    assert.equal(after.json.attempts, 2);
    assert.equal(after.json.delivery_attempts.length, 2);
  });

  test("bulk replay of dead events needs a status and replays each once", async () => {
    failing = true;
    const r = await hook.post("adm-tools", JSON.stringify({ mailbox: "ops@example.com.ua", uid: 7, tstamp: 1, event: "new" }), admHeaders());
    await waitFor(async () => (await hook.deadLetters()).length === 1);
    assert.equal((await hook.admin("/admin/replay", { method: "POST" })).status, 400);
    failing = false;
    const bulk = await hook.admin("/admin/replay?status=dead", { method: "POST" });
    assert.equal(bulk.status, 202);
    assert.deepEqual(bulk.json.ids, r.json.ids);
    await waitFor(() => origin.deliveries.find((d) => d.id === r.json.ids[0]));
    assert.equal((await hook.admin("/admin/events?status=dead")).json.total, 0);
  });
});

test("retention removes log rows older than LOG_RETENTION_DAYS and the R2 objects they reference", async () => {
  const hook = await startMailhook({ vars: { LOG_RETENTION_DAYS: "7" } });
  try {
    const db = await hook.db();
    const bucket = await hook.r2();
    const old = Math.floor(Date.now() / 1000) - 8 * 86400;
    const recent = Math.floor(Date.now() / 1000) - 86400;
    const insert = "INSERT INTO events (id, provider, type, received_at, status, attempts, payload_ref, envelope, updated_at) VALUES (?1, 'improvmx', 'email.received', ?2, 'delivered', 1, ?3, '{}', ?2)";
    await db.batch([
      db.prepare(insert).bind("evt_old", old, "events/evt_old.json"),
      db.prepare(insert).bind("evt_recent", recent, "events/evt_recent.json"),
      db.prepare("INSERT INTO delivery_attempts (event_id, destination, attempt, at_ms, status_code) VALUES ('evt_old', 'origin', 1, ?1, 200)").bind(old * 1000),
      db.prepare("INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES ('evt_old', 'origin', 'delivered', 1, ?1)").bind(old),
      // Dead at one destination, still retrying at another: kept however old.
      db.prepare(insert).bind("evt_pending", old, null),
      db.prepare("INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES ('evt_pending', 'a', 'dead', 1, ?1), ('evt_pending', 'b', 'retrying', 1, ?1)").bind(old),
    ]);
    await bucket.put("events/evt_old.json", "{}");
    await bucket.put("events/evt_recent.json", "{}");
    // Objects no row refers to yet: they may belong to an event still on the queue, so the sweep keeps them until they are 15 days old.
    await bucket.put("events/evt_queued.c0.parts", "[]");
    await bucket.put("events/evt_queued.c0.body", "x");
    await hook.scheduled();
    const ids = (await db.prepare("SELECT id FROM events").all()).results.map((r) => r.id);
    assert.deepEqual(ids.sort(), ["evt_pending", "evt_recent"]);
    assert.equal((await db.prepare("SELECT COUNT(*) AS n FROM delivery_attempts").first()).n, 0);
    assert.equal((await db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = 'evt_old'").first()).n, 0);
    assert.equal(await bucket.head("events/evt_old.json"), null);
    assert.ok(await bucket.head("events/evt_recent.json"));
    assert.ok(await bucket.head("events/evt_queued.c0.parts"));
    assert.ok(await bucket.head("events/evt_queued.c0.body"));
    assert.ok(hook.logs.some((l) => l.includes('"r2_sweep"') && l.includes('"looked_at":3')), hook.logs.filter((l) => l.includes("sweep")).join("\n"));
  } finally {
    await hook.dispose();
  }
});
