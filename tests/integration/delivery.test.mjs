// Delivery that loses nothing, under injected faults. The origin is real
// (127.0.0.1), delays are shortened (RETRY_SCHEDULE_SECONDS of 1 s steps,
// ORIGIN_TIMEOUT_SECONDS=1) so the suite ends within a minute or two.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Webhook } from "standardwebhooks";
import { admHeaders, SECRETS, sleep, startMailhook, startOrigin, waitFor } from "./harness.mjs";

/** A small seeded PRNG, so a failing run can be repeated exactly. */
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const MIRROR_SECRET = "whsec_" + Buffer.from("the mirror destination's key").toString("base64");
const SCENARIOS = ["ok", "random", "429", "hang", "flaky", "400", "410"];
const PERMANENT = new Set(["400", "410"]);
const admEvent = (uid) =>
  JSON.stringify({ mailbox: "load@example.com.ua", uid, tstamp: 1731402000 + uid, event: "new", folder: "INBOX", subject: `load ${uid}` });

describe("delivery under faults", () => {
  test("300 events with duplicates, two destinations, one faulty: every event reaches each destination once, permanent failures only in the faulty one's dead letters", { timeout: 300_000 }, async () => {
    const seed = Number(process.env.FAULT_SEED ?? 20261123);
    const random = mulberry32(seed);
    const state = new Map(); // id → { scenario, attempts, randomFailures }
    let down = true; // the origin starts down (connections reset), and comes up after 3 s
    setTimeout(() => (down = false), 3000);

    const origin = await startOrigin({
      respond(delivery) {
        const uid = delivery.event.data.mailbox.uid;
        const s = state.get(delivery.id) ?? { scenario: SCENARIOS[Number(uid) % SCENARIOS.length], attempts: 0, randomFailures: 0 };
        state.set(delivery.id, s);
        s.attempts += 1;
        switch (s.scenario) {
          case "random":
            // About half the attempts fail, never more than 4 in a row (the schedule has 10 retries).
            if (s.randomFailures < 4 && random() < 0.5) {
              s.randomFailures += 1;
              return 500;
            }
            return 200;
          case "429":
            return s.attempts === 1 ? { status: 429, headers: { "retry-after": "1" } } : 200;
          case "hang":
            return s.attempts === 1 ? { hang: true } : 204;
          case "flaky":
            return s.attempts <= 2 ? 503 : 200;
          case "400":
            return 400;
          case "410":
            return 410;
          default:
            return 200;
        }
      },
    });
    // While "down", every connection is reset before an answer.
    const realEmit = origin.server.emit.bind(origin.server);
    origin.server.emit = (name, req, res) => {
      if (name === "request" && down) {
        req.socket.destroy();
        return true;
      }
      return realEmit(name, req, res);
    };

    // A second destination that is always up: the faulty one must never delay it.
    const mirror = await startOrigin({ secret: MIRROR_SECRET });
    const hook = await startMailhook({
      vars: {
        ORIGIN_URL: origin.url,
        ORIGIN_TIMEOUT_SECONDS: "1",
        RETRY_SCHEDULE_SECONDS: "1,1,1,1,1,1,1,1,1,1",
        // The circuit breaker is on: it opens while the origin is down and flaps with its failures.
        CIRCUIT_FAILURES: "5",
        CIRCUIT_PROBE_SECONDS: "1",
        DESTINATIONS: [{ name: "mirror", url: mirror.url }],
      },
      secrets: { DESTINATION_MIRROR_SIGNING_SECRET: MIRROR_SECRET },
    });
    try {
      const accepted = new Map(); // id → scenario
      let duplicates = 0;
      for (let uid = 1; uid <= 300; uid++) {
        const r = await hook.post("adm-tools", admEvent(uid), admHeaders());
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.status, "accepted");
        accepted.set(r.json.ids[0], SCENARIOS[uid % SCENARIOS.length]);
        if (uid % 5 === 0) {
          const again = await hook.post("adm-tools", admEvent(uid), admHeaders());
          assert.deepEqual(again.json, { status: "duplicate", ids: r.json.ids });
          duplicates += 1;
        }
      }
      assert.equal(accepted.size, 300);
      assert.equal(duplicates, 60);

      const permanent = [...accepted].filter(([, s]) => PERMANENT.has(s)).map(([id]) => id);
      const settled = async () => {
        const dead = (await hook.deliveries("origin")).filter((d) => d.status === "dead");
        const delivered = new Set(origin.deliveries.map((d) => d.id));
        return delivered.size + dead.length >= accepted.size && new Set(mirror.deliveries.map((d) => d.id)).size >= accepted.size ? { dead, delivered } : null;
      };
      const { dead } = await waitFor(settled, { ms: 180_000, what: "every event delivered or dead" });
      await sleep(3000); // anything delivered twice would show up now

      const okCount = new Map();
      for (const d of origin.deliveries) okCount.set(d.id, (okCount.get(d.id) ?? 0) + 1);
      const mirrored = new Map();
      for (const d of mirror.deliveries) mirrored.set(d.id, (mirrored.get(d.id) ?? 0) + 1);
      for (const id of accepted.keys()) assert.equal(mirrored.get(id), 1, `${id} reached the mirror ${mirrored.get(id) ?? 0} times`);
      assert.equal(mirror.attempts.length, 300, "the healthy destination was attempted once per event");
      for (const [id, scenario] of accepted) {
        if (PERMANENT.has(scenario)) {
          assert.equal(okCount.get(id), undefined, `${id} (${scenario}) was delivered`);
        } else {
          assert.equal(okCount.get(id), 1, `${id} (${scenario}) delivered ${okCount.get(id) ?? 0} times`);
          const attempts = origin.attempts.filter((a) => a.id === id);
          assert.equal(attempts.at(-1), origin.deliveries.find((d) => d.id === id), `${id} was attempted again after its 2xx`);
        }
      }
      assert.deepEqual(dead.map((r) => r.event_id).sort(), permanent.sort(), "the dead letters are exactly the permanent failures");
      for (const row of dead) {
        assert.equal(row.last_status, Number(accepted.get(row.event_id)));
        assert.ok(row.attempts >= 1);
      }
      assert.deepEqual((await hook.deadLetters()).map((r) => r.id).sort(), permanent.sort(), "the events' summaries agree");
      assert.equal((await hook.deliveries("mirror")).filter((d) => d.status !== "delivered").length, 0);
      const retried = ["random", "429", "hang", "flaky"].map((s) => [...state.values()].filter((x) => x.scenario === s && x.attempts > 1).length);
      assert.ok(retried.every((n) => n > 0), `every failing scenario was retried: ${retried}`);
      assert.equal(origin.invalid.length, 0, "every delivery's signature verified");
      const opened = hook.logs.filter((l) => l.includes('"circuit_opened"')).length;
      console.log(`seed ${seed}: ${origin.attempts.length} attempts for 300 events, ${dead.length} dead letters, the circuit opened ${opened} times`);
    } finally {
      await hook.dispose();
      await origin.close();
      await mirror.close();
    }
  });
});

describe("delivery details", () => {
  test("the schedule running out dead-letters the event with its last status and error", async () => {
    const origin = await startOrigin({ respond: () => 503 });
    const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url, RETRY_SCHEDULE_SECONDS: "1,1" } });
    try {
      const r = await hook.post("adm-tools", admEvent(9001), admHeaders());
      const [row] = await waitFor(async () => ((await hook.deadLetters()).length ? hook.deadLetters() : null), { what: "the dead letter" });
      assert.equal(row.id, r.json.ids[0]);
      assert.equal(row.attempts, 3, "the first attempt and two retries");
      assert.equal(row.last_status, 503);
      assert.match(row.last_error, /503/);
      assert.equal(origin.attempts.length, 3);
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });

  test("ORIGIN_SIGNING_SECRET rotation: one signature per key, each verifies", async () => {
    const next = "whsec_" + Buffer.from("the next origin key").toString("base64");
    const origin = await startOrigin({ secret: next });
    const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url }, secrets: { ORIGIN_SIGNING_SECRET: `${SECRETS.ORIGIN_SIGNING_SECRET},${next}` } });
    try {
      const r = await hook.post("adm-tools", admEvent(9002), admHeaders());
      const d = await waitFor(() => origin.deliveries.find((x) => x.id === r.json.ids[0]));
      const sigs = d.headers["webhook-signature"].split(" ");
      assert.equal(sigs.length, 2);
      assert.ok(sigs.every((s) => s.startsWith("v1,")));
      assert.ok(new Webhook(SECRETS.ORIGIN_SIGNING_SECRET).verify(d.body, d.headers), "the old key verifies too");
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });

  test("a queue message that is no envelope is kept as a dead letter with its text, not retried and not lost", async () => {
    const origin = await startOrigin();
    const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url } });
    try {
      const queue = await hook.mf.getQueueProducer("EVENTS");
      await queue.send("{\"not\": \"an envelope\"}", { contentType: "text" });
      await queue.send({ an: "object" }, { contentType: "json" });
      const rows = await waitFor(async () => {
        const dead = await hook.deadLetters();
        return dead.length === 2 ? dead : null;
      }, { what: "two dead letters" });
      assert.ok(rows.every((r) => r.provider === "(malformed)" && r.id.startsWith("malformed_")), JSON.stringify(rows));
      assert.ok(rows.some((r) => r.envelope === '{"not": "an envelope"}'), "the text is kept as it came");
      assert.ok(rows.some((r) => r.envelope === '{"an":"object"}'), "a body that is no text is kept as its JSON");
      const listed = await hook.admin("/admin/events?status=dead");
      assert.equal(listed.json.total, 2, "listed among the dead letters, as the console's page and export --status dead read them");
      assert.ok(rows.every((r) => /not a mailhook envelope|not text/.test(r.last_error)), JSON.stringify(rows.map((r) => r.last_error)));
      const replay = await hook.admin(`/admin/events/${rows[0].id}/replay`, { method: "POST" });
      assert.equal(replay.status, 400, "nothing names where to deliver it");
      await sleep(300);
      assert.equal(origin.attempts.length, 0);
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });

  test("a small event delivered on its first attempt writes two D1 rows: its event (which keeps the delivery) and its id's index", async () => {
    const origin = await startOrigin();
    const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url } });
    const written = () =>
      hook.logs.filter((l) => l.startsWith("{") && l.includes('"ops"')).reduce((n, l) => n + (JSON.parse(l).ops?.d1_rows_written ?? 0), 0);
    try {
      // The first delivery to a destination also writes its circuit's row, once.
      await hook.post("adm-tools", admEvent(9010), admHeaders());
      await waitFor(() => origin.deliveries.length === 1 && hook.logs.some((l) => l.includes('"kind":"batch"')));
      hook.logs.length = 0;
      const r = await hook.post("adm-tools", admEvent(9011), admHeaders());
      await waitFor(() => origin.deliveries.length === 2 && hook.logs.some((l) => l.includes('"kind":"batch"')));
      assert.equal(written(), 2);
      const id = r.json.ids[0];
      const shown = await hook.admin(`/admin/events/${id}`);
      assert.equal(shown.json.status, "delivered");
      assert.deepEqual(
        shown.json.deliveries.map((d) => [d.destination, d.status, d.attempts, d.last_status]),
        [["origin", "delivered", 1, 204]],
        "the delivery kept in the event's row is shown as any other",
      );
      assert.equal(shown.json.delivery_attempts.length, 1, "the first attempt, kept in the event's row, is still shown");
      assert.equal(shown.json.delivery_attempts[0].status_code, 204);
      assert.equal(shown.json.delivery_attempts[0].attempt, 1);
      const db = await hook.db();
      assert.equal((await db.prepare("SELECT COUNT(*) AS n FROM delivery_attempts").first()).n, 0);
      assert.equal((await db.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE event_id = ?1").bind(id).first()).n, 0);
      // Filters, per-destination counts and the overview's latency read it too.
      const listed = (await hook.admin("/admin/events?status=delivered&destination=origin")).json.events.map((e) => e.id);
      assert.ok(listed.includes(id), "listed by its delivery's status and destination");
      assert.equal((await hook.admin("/admin/events?status=dead")).json.events.length, 0);
      const origin_ = (await hook.admin("/admin/destinations")).json.destinations.find((d) => d.name === "origin");
      assert.equal(origin_.deliveries.delivered, 2);
      const stats = (await hook.admin("/admin/stats")).json;
      assert.equal(stats.latency_ms.count, 2, "both first deliveries' latencies");
      // A replay first gives the delivery a row of its own, which then counts the second attempt.
      const replay = await hook.admin(`/admin/events/${id}/replay`, { method: "POST" });
      assert.equal(replay.status, 202, JSON.stringify(replay.json));
      await waitFor(() => origin.deliveries.length === 3);
      await waitFor(async () => (await hook.admin(`/admin/events/${id}`)).json.deliveries[0]?.attempts === 2);
      const again = (await hook.admin(`/admin/events/${id}`)).json;
      assert.deepEqual(again.deliveries.map((d) => [d.destination, d.status, d.attempts]), [["origin", "delivered", 2]]);
      assert.deepEqual(again.delivery_attempts.map((a) => a.status_code), [204, 204], "the first attempt is kept, the replay's added");
      // A bulk replay of delivered deliveries takes those kept in their events' rows (the first event's) and counts none left.
      const bulk = await hook.admin("/admin/replay?status=delivered&destination=origin", { method: "POST" });
      assert.equal(bulk.status, 202, JSON.stringify(bulk.json));
      assert.equal(bulk.json.count, 2, JSON.stringify(bulk.json));
      assert.equal(bulk.json.remaining, 0, JSON.stringify(bulk.json));
      await waitFor(() => origin.deliveries.length === 5);
      await sleep(500);
      assert.equal(origin.deliveries.length, 5, "each delivery replayed once");
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });

  test("a delivery row left without its event (a replay marked as retention removed it) is brought up to date, not hidden", async () => {
    const origin = await startOrigin();
    const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url }, without: ["DEDUPE"] });
    try {
      const r = await hook.post("adm-tools", admEvent(9020), admHeaders());
      const id = r.json.ids[0];
      await waitFor(() => origin.deliveries.length === 1);
      await waitFor(async () => (await hook.admin(`/admin/events/${id}`)).json.status === "delivered");
      const db = await hook.db();
      await db.prepare("DELETE FROM events WHERE id = ?1").bind(id).run();
      await db
        .prepare("INSERT INTO deliveries (event_id, destination, status, attempts, updated_at) VALUES (?1, 'origin', 'queued', 0, 1)")
        .bind(id)
        .run();
      await hook.post("adm-tools", admEvent(9020), admHeaders()); // accepted again: no KV to say it was
      await waitFor(() => origin.deliveries.length === 2);
      await waitFor(async () => (await hook.admin(`/admin/events/${id}`)).status === 200);
      const shown = (await hook.admin(`/admin/events/${id}`)).json;
      assert.equal(shown.status, "delivered");
      assert.deepEqual(shown.deliveries.map((d) => [d.destination, d.status, d.attempts]), [["origin", "delivered", 1]]);
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });

  test("without KV, dedupe falls open: the event is accepted twice, and the consumer delivers it once", async () => {
    const origin = await startOrigin();
    const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url }, without: ["DEDUPE"] });
    try {
      const a = await hook.post("adm-tools", admEvent(9003), admHeaders());
      const b = await hook.post("adm-tools", admEvent(9003), admHeaders());
      assert.equal(a.json.status, "accepted");
      assert.equal(b.json.status, "accepted");
      assert.equal(b.json.ids[0], a.json.ids[0], "one event id: were both sent, the origin could drop one by webhook-id");
      await waitFor(() => hook.logs.some((l) => l.includes('"already_delivered"')), { what: "the second copy found delivered" });
      assert.equal(origin.deliveries.filter((d) => d.id === a.json.ids[0]).length, 1);
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });
});
