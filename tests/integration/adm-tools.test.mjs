// adm.tools end to end: request → token → canonical event → KV dedupe →
// Queue → consumer → signed POST to a real origin on 127.0.0.1.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { admHeaders, fixture, sleep, startMailhook, startOrigin, waitFor } from "./harness.mjs";

describe("adm.tools end to end", () => {
  let origin, hook;
  before(async () => {
    origin = await startOrigin();
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url, ADM_TOOLS_ACCOUNT_ID: "123456" } });
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
  });

  test("a new message is accepted, delivered signed once, and its repeat is a duplicate", async () => {
    const body = fixture("adm-tools", "new");
    const first = await hook.post("adm-tools", body, admHeaders());
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.status, "accepted");
    assert.equal(first.json.ids.length, 1);
    const [id] = first.json.ids;
    assert.match(id, /^evt_[0-9a-f]{32}$/);

    const d = await waitFor(() => origin.deliveries.find((x) => x.id === id), { what: "the delivery" });
    assert.equal(d.event.id, id);
    assert.equal(d.event.specversion, "1.0");
    assert.equal(d.event.type, "email.received");
    assert.equal(d.event.source, "/providers/adm-tools");
    assert.equal(d.event.time, "2024-11-12T09:00:00Z");
    assert.equal(d.event.subject, "<CAF1a2b3c4d5e6f7@mail.example.org>");
    assert.deepEqual(d.event.data.from, { email: "olena.kovalenko@example.org", name: "Olena Kovalenko" });
    assert.equal(d.event.data.mailbox.uid, "4127");
    assert.deepEqual(d.event.data.raw, JSON.parse(body));
    assert.match(d.headers["user-agent"], /^mailhook\//);
    assert.equal(d.headers["content-type"], "application/json");

    const again = await hook.post("adm-tools", body, admHeaders());
    assert.equal(again.status, 200);
    assert.deepEqual(again.json, { status: "duplicate", ids: [id] });
    await sleep(2500); // more than a batch timeout: a second delivery would have come
    assert.equal(origin.attempts.filter((x) => x.id === id).length, 1);
    assert.equal(origin.invalid.length, 0);
  });

  test("flags-set with \\Deleted arrives as mailbox.message_deleted, create as message_added", async () => {
    const del = await hook.post("adm-tools", fixture("adm-tools", "flags-set-deleted"), admHeaders());
    const add = await hook.post("adm-tools", fixture("adm-tools", "create"), admHeaders());
    assert.equal(del.status, 200);
    assert.equal(add.status, 200);
    const d = await waitFor(() => origin.deliveries.find((x) => x.id === del.json.ids[0]));
    const a = await waitFor(() => origin.deliveries.find((x) => x.id === add.json.ids[0]));
    assert.equal(d.event.type, "mailbox.message_deleted");
    assert.deepEqual(d.event.data.mailbox.flags, ["\\Seen", "\\Deleted"]);
    assert.equal(a.event.type, "mailbox.message_added");
  });

  test("an unknown event type is accepted and delivered as email.unknown with its raw payload", async () => {
    const body = fixture("adm-tools", "unknown-event");
    const r = await hook.post("adm-tools", body, admHeaders());
    assert.equal(r.status, 200);
    const d = await waitFor(() => origin.deliveries.find((x) => x.id === r.json.ids[0]));
    assert.equal(d.event.type, "email.unknown");
    assert.deepEqual(d.event.data.raw, JSON.parse(body));
  });

  test("refusals: wrong token 401, GET 405 with Allow, empty body 400, bad JSON 400, unknown route 404; none is queued", async () => {
    const before = origin.attempts.length;
    const body = fixture("adm-tools", "new-minimal");
    const wrong = await hook.post("adm-tools", body, admHeaders("not-the-token"));
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error.code, "unauthorized");
    const missing = await hook.post("adm-tools", body, { "content-type": "application/json" });
    assert.equal(missing.status, 401);
    const get = await hook.request("/webhooks/adm-tools");
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST");
    assert.equal(get.json.error.code, "method_not_allowed");
    const empty = await hook.post("adm-tools", "", admHeaders());
    assert.equal(empty.status, 400);
    assert.equal(empty.json.error.code, "bad_request");
    const invalid = await hook.post("adm-tools", "{not json", admHeaders());
    assert.equal(invalid.status, 400);
    const nobody = await hook.post("nobody", body, admHeaders());
    assert.equal(nobody.status, 404);
    assert.equal(nobody.json.error.code, "not_found");
    await sleep(2500);
    assert.equal(origin.attempts.length, before, "a refused request reached the origin");
    // This fixture was never accepted, so no dedupe key exists for it.
    const accepted = await hook.post("adm-tools", body, admHeaders());
    assert.equal(accepted.json.status, "accepted");
  });

  test("/webhook-confirm.txt serves the account id; /healthz names configured providers and no secret", async () => {
    const c = await hook.request("/webhook-confirm.txt");
    assert.equal(c.status, 200);
    assert.equal(c.text, "123456");
    assert.match(c.headers.get("content-type"), /^text\/plain/);
    const h = await hook.request("/healthz");
    assert.equal(h.status, 200);
    assert.equal(h.json.status, "ok");
    assert.match(h.json.version, /^\d+\.\d+\.\d+/);
    assert.equal(h.json.providers["adm-tools"].configured, true);
    assert.equal(h.json.delivery.configured, true);
    assert.ok(!h.text.includes("it-adm-tools-token") && !h.text.includes("whsec_"));
    const post = await hook.request("/healthz", { method: "POST" });
    assert.equal(post.status, 405);
  });
});

describe("adm.tools configuration and failures", () => {
  test("without ADM_TOOLS_WEBHOOK_TOKEN the route answers 503 and the confirm file 404", async () => {
    const hook = await startMailhook({ secrets: { ADM_TOOLS_WEBHOOK_TOKEN: undefined } });
    try {
      const r = await hook.post("adm-tools", fixture("adm-tools", "new"), admHeaders());
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, "not_configured");
      assert.match(r.json.error.message, /ADM_TOOLS_WEBHOOK_TOKEN/);
      assert.equal((await hook.request("/webhook-confirm.txt")).status, 404);
      assert.equal((await hook.request("/healthz")).json.providers["adm-tools"].configured, false);
    } finally {
      await hook.dispose();
    }
  });

  test("a body over MAX_BODY_BYTES is 413", async () => {
    const hook = await startMailhook({ vars: { MAX_BODY_BYTES: "100" } });
    try {
      const r = await hook.post("adm-tools", fixture("adm-tools", "new"), admHeaders());
      assert.equal(r.status, 413);
      assert.equal(r.json.error.code, "payload_too_large");
    } finally {
      await hook.dispose();
    }
  });

  test("a configuration that would weaken replay protection is refused with a clear error", async () => {
    const hook = await startMailhook({ vars: { MAX_EVENT_AGE_SECONDS: "999999" } });
    try {
      const r = await hook.post("adm-tools", fixture("adm-tools", "new"), admHeaders());
      assert.equal(r.status, 503);
      assert.match(r.json.error.message, /MAX_EVENT_AGE_SECONDS.*DEDUPE_TTL_SECONDS/);
      const h = await hook.request("/healthz");
      assert.equal(h.status, 503);
      assert.equal(h.json.status, "misconfigured");
    } finally {
      await hook.dispose();
    }
  });

  test("when the queue cannot be reached the answer is 503 and no dedupe key is left", async () => {
    const hook = await startMailhook({ without: ["EVENTS"] });
    try {
      const r = await hook.post("adm-tools", fixture("adm-tools", "new"), admHeaders());
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, "unavailable");
      const keys = await (await hook.kv()).list();
      assert.equal(keys.keys.length, 0);
    } finally {
      await hook.dispose();
    }
  });
});
