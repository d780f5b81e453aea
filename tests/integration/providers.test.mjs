// The four other providers through workerd: accepted, duplicate, and every
// refusal (401, 403, 400, stale), with nothing of a refusal reaching the origin.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fixture, ptrName, signedHeaders, sleep, startDoh, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const now = () => Math.floor(Date.now() / 1000);

/** A fixture with its own time replaced by `t`, as fresh bytes. */
function fresh(provider, name, t = now()) {
  const v = JSON.parse(fixture(provider, name));
  if (provider === "mailtura") v.timestamp = new Date(t * 1000).toISOString().replace(".000", "");
  if (provider === "maileroo") v.event_time = t;
  return JSON.stringify(v);
}

const ADDR = { good: "192.0.2.10", evil: "192.0.2.11", mismatch: "192.0.2.12", v6: "2001:db8::10", dohDown: "192.0.2.13" };

describe("providers end to end", () => {
  let origin, hook, doh;
  before(async () => {
    origin = await startOrigin();
    doh = await startDoh(
      {
        [ptrName(ADDR.good)]: { PTR: ["mx1.mail-plus.com"] },
        "mx1.mail-plus.com": { A: [ADDR.good] },
        [ptrName(ADDR.evil)]: { PTR: ["x.evilmail-plus.com"] },
        "x.evilmail-plus.com": { A: [ADDR.evil] },
        [ptrName(ADDR.mismatch)]: { PTR: ["mx2.mail-plus.com"] },
        "mx2.mail-plus.com": { A: ["192.0.2.99"] },
        [ptrName(ADDR.v6)]: { PTR: ["mx6.mail-plus.com"] },
        "mx6.mail-plus.com": { AAAA: [ADDR.v6] },
      },
      { fail: [ptrName(ADDR.dohDown)] },
    );
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url, DOH_URL: doh.url, MAIL_PLUS_VERIFY: "rdns" } });
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
    await doh?.close();
  });

  const delivered = (id) => waitFor(() => origin.deliveries.find((d) => d.id === id), { what: `delivery of ${id}` });
  async function assertNothingQueued(before) {
    await sleep(2500); // longer than a batch timeout
    assert.equal(origin.attempts.length, before, "a refused request reached the origin");
  }

  for (const provider of ["mailtura", "maileroo"]) {
    test(`${provider}: accepted, delivered, duplicate`, async () => {
      const body = fresh(provider, "delivered");
      const r = await hook.post(provider, body, signedHeaders[provider](body));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.status, "accepted");
      const d = await delivered(r.json.ids[0]);
      assert.equal(d.event.type, "email.delivered");
      assert.equal(d.event.source, `/providers/${provider}`);
      const again = await hook.post(provider, body, signedHeaders[provider](body));
      assert.deepEqual(again.json, { status: "duplicate", ids: r.json.ids });
    });

    test(`${provider}: a wrong secret, a changed byte, no signature are 401; stale is 400; none is queued`, async () => {
      const before = origin.attempts.length;
      const body = fresh(provider, "opened");
      const wrong = await hook.post(provider, body, signedHeaders[provider](body, "not-the-secret"));
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json.error.code, "unauthorized");
      const changed = body.replace(/"user/, '"usEr');
      assert.notEqual(changed, body);
      const tampered = await hook.post(provider, changed, signedHeaders[provider](body));
      assert.equal(tampered.status, 401);
      const unsigned = await hook.post(provider, body, { "content-type": "application/json" });
      assert.equal(unsigned.status, 401);
      const old = fresh(provider, "opened", now() - 2 * 86400);
      const stale = await hook.post(provider, old, signedHeaders[provider](old));
      assert.equal(stale.status, 400);
      assert.equal(stale.json.error.code, "stale_event");
      const junk = "{not json";
      const bad = await hook.post(provider, junk, signedHeaders[provider](junk));
      assert.equal(bad.status, 400);
      assert.equal(bad.json.error.code, "bad_request");
      await assertNothingQueued(before);
    });

    test(`${provider}: an unknown type is delivered as email.unknown with its raw payload`, async () => {
      const body = fresh(provider, "unknown-type");
      const r = await hook.post(provider, body, signedHeaders[provider](body));
      assert.equal(r.status, 200);
      const d = await delivered(r.json.ids[0]);
      assert.equal(d.event.type, "email.unknown");
      assert.deepEqual(d.event.data.raw, JSON.parse(body));
    });
  }

  test("improvmx: accepted from its address by CF-Connecting-IP, duplicate, 403 otherwise", async () => {
    const body = fixture("improvmx", "sample");
    const r = await hook.post("improvmx", body, { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" });
    assert.equal(r.status, 200, r.text);
    const d = await delivered(r.json.ids[0]);
    assert.equal(d.event.type, "email.received");
    assert.equal(d.event.data.inbound.attachments.length, 3);
    assert.deepEqual(d.event.data.inbound.auth, { spf: "pass", dkim: "none", dmarc: null });
    const again = await hook.post("improvmx", body, { "cf-connecting-ip": "15.237.103.194" });
    assert.equal(again.json.status, "duplicate");

    const before = origin.attempts.length;
    const other = fixture("improvmx", "unicode");
    const outside = await hook.post("improvmx", other, { "cf-connecting-ip": "15.237.103.195" });
    assert.equal(outside.status, 403);
    assert.equal(outside.json.error.code, "forbidden");
    const spoofed = await hook.post("improvmx", other, { "cf-connecting-ip": "198.51.100.1", "x-forwarded-for": "15.237.103.194" });
    assert.equal(spoofed.status, 403, "X-Forwarded-For must not count");
    const notMail = await hook.post("improvmx", "{}", { "cf-connecting-ip": "15.237.103.194" });
    assert.equal(notMail.status, 400);
    await assertNothingQueued(before);
  });

  test("mail-plus: forward-confirmed reverse DNS over DoH accepts, IPv4 and IPv6", async () => {
    const body = fixture("mail-plus", "sample");
    const r = await hook.post("mail-plus", body, { "content-type": "application/json", "cf-connecting-ip": ADDR.good });
    assert.equal(r.status, 200, r.text);
    const d = await delivered(r.json.ids[0]);
    assert.equal(d.event.data.inbound.spam.score, 0.1);
    const dup = await hook.post("mail-plus", body, { "content-type": "application/json", "cf-connecting-ip": ADDR.good });
    assert.deepEqual(dup.json, { status: "duplicate", ids: r.json.ids });
    const v6 = await hook.post("mail-plus", fixture("mail-plus", "unicode"), { "cf-connecting-ip": ADDR.v6 });
    assert.equal(v6.status, 200, v6.text);
    assert.ok(doh.queries.includes(`${ptrName(ADDR.v6)} PTR`) && doh.queries.includes("mx6.mail-plus.com AAAA"));

    // The verdict is cached: the same address is not looked up again.
    const asked = doh.queries.length;
    const again = await hook.post("mail-plus", fixture("mail-plus", "header-only"), { "cf-connecting-ip": ADDR.good });
    assert.equal(again.status, 200);
    assert.equal(doh.queries.length, asked);
    await delivered(v6.json.ids[0]);
    await delivered(again.json.ids[0]);
  });

  test("mail-plus: a PTR of x.evilmail-plus.com and a PTR whose forward lookup is another address are 403; DoH down is 503", async () => {
    const before = origin.attempts.length;
    const body = fixture("mail-plus", "header-block");
    const evil = await hook.post("mail-plus", body, { "cf-connecting-ip": ADDR.evil });
    assert.equal(evil.status, 403, evil.text);
    assert.equal(evil.json.error.code, "forbidden");
    const mismatch = await hook.post("mail-plus", body, { "cf-connecting-ip": ADDR.mismatch });
    assert.equal(mismatch.status, 403);
    assert.ok(doh.queries.includes("mx2.mail-plus.com A"), "the forward lookup was made");
    const none = await hook.post("mail-plus", body, { "cf-connecting-ip": "198.51.100.200" });
    assert.equal(none.status, 403, "no PTR at all");
    const down = await hook.post("mail-plus", body, { "cf-connecting-ip": ADDR.dohDown });
    assert.equal(down.status, 503);
    assert.equal(down.json.error.code, "unavailable");
    await assertNothingQueued(before);
  });
});
