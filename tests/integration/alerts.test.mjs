// Alerts: a real HTTP receiver on 127.0.0.1 (ALERT_URL) gets one message for
// a burst of dead letters, sent by the minute cron; while the receiver fails,
// the dead letters are recorded all the same and the message waits for it.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { admHeaders, fixture, startMailhook, startOrigin, waitFor } from "./harness.mjs";

describe("alerts", () => {
  let receiver, origin, hook;
  const got = { messages: [], refused: 0, failing: true };
  before(async () => {
    receiver = createServer((req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => {
        if (got.failing) {
          got.refused += 1;
          res.writeHead(503).end("down");
          return;
        }
        got.messages.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) });
        res.writeHead(200).end("ok");
      });
    });
    await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
    // Every delivery is refused for good (410): each event is a dead letter at once.
    origin = await startOrigin({ respond: () => 410 });
    hook = await startMailhook({
      vars: { ORIGIN_URL: origin.url, PUBLIC_URL: "https://mailhook.example.com/" },
      secrets: { ALERT_URL: `http://127.0.0.1:${receiver.address().port}/hooks/alerts` },
    });
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
    await new Promise((r) => receiver.close(r));
  });

  test("a burst of 30 dead letters is one message, and a receiver that fails loses nothing", async () => {
    const base = JSON.parse(fixture("adm-tools", "create"));
    for (let i = 0; i < 30; i++) {
      const body = JSON.stringify({ ...base, uid: 5000 + i });
      assert.equal((await hook.post("adm-tools", body, admHeaders())).status, 200);
    }
    await waitFor(async () => (await hook.deadLetters()).length === 30, { ms: 30000, what: "30 dead letters" });

    // The receiver is down: the message is not sent, the dead letters stay recorded, nothing is lost.
    await hook.alerts();
    assert.equal(got.refused, 1);
    assert.equal(got.messages.length, 0);
    assert.equal((await hook.deadLetters()).length, 30);
    assert.ok(hook.logs.some((l) => l.includes('"kind":"alert_failed"')), "the failure is logged");

    // Back up: one message for the whole burst.
    got.failing = false;
    await hook.alerts();
    assert.equal(got.messages.length, 1);
    const { headers, body } = got.messages[0];
    assert.equal(headers["content-type"], "application/json");
    assert.match(body.text, /^mailhook: 30 dead letters \(an event that a destination will not get\)\n• adm-tools mailbox\.message_added to origin <https:\/\/mailhook\.example\.com\/console\/#\/events\/(evt_[0-9a-f]+)\|\1>: /);
    assert.match(body.text, /… and 10 more/);
    assert.equal(body.mailhook.dead, 30);
    assert.equal(body.mailhook.items.length, 30);
    assert.deepEqual(Object.keys(body.mailhook.items[0]).sort(), ["destination", "error", "id", "kind", "provider", "type", "url"]);
    assert.equal(body.mailhook.items[0].url, `https://mailhook.example.com/console/#/events/${body.mailhook.items[0].id}`);

    // Nothing waits any more: the next minutes send nothing.
    await hook.alerts();
    assert.equal(got.messages.length, 1);
  });

  test("a destination whose circuit opens is told", async () => {
    const down = await startOrigin({ respond: () => 500 });
    const other = await startMailhook({
      vars: { ORIGIN_URL: down.url, CIRCUIT_FAILURES: "2", CIRCUIT_PROBE_SECONDS: "600" },
      secrets: { ALERT_URL: `http://127.0.0.1:${receiver.address().port}/hooks/alerts` },
    });
    try {
      const body = JSON.stringify({ ...JSON.parse(fixture("adm-tools", "create")), uid: 9001 });
      assert.equal((await other.post("adm-tools", body, admHeaders())).status, 200);
      await waitFor(() => other.logs.some((l) => l.includes('"kind":"circuit_opened"')), { ms: 20000, what: "the circuit to open" });
      const before = got.messages.length;
      await other.alerts();
      assert.equal(got.messages.length, before + 1);
      assert.match(got.messages.at(-1).body.text, /destination origin is down \(2 failures in a row\)/);
    } finally {
      await other.dispose();
      await down.close();
    }
  });
});
