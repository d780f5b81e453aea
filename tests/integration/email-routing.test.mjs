// Email Routing: raw mail handed to the Worker's `email` handler the way
// `wrangler dev` and Miniflare do (`POST /cdn-cgi/handler/email?from=&to=`),
// through the same pipeline as a webhook: every .eml fixture reaches a real
// origin as exactly its golden event (the large one through R2), a second
// copy is a duplicate, and a message is never dropped in silence: refused
// for good (setReject: 400 here, 5xx SMTP) when it can never be taken,
// refused for now (a throw: 500 here, 4xx SMTP, the sender retries) when it may be later.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { SECRETS, sleep, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../fixtures/email-routing");
const FIXTURES = readdirSync(dir).filter((f) => f.endsWith(".eml")).map((f) => f.replace(/\.eml$/, "")).sort();
const raw = (name) => readFileSync(path.join(dir, `${name}.eml`));
const golden = (name) => JSON.parse(readFileSync(path.join(dir, `${name}.expected.json`), "utf8"));
const emailLines = (logs) => logs.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l)).filter((l) => l.kind === "email");

describe("Email Routing", () => {
  let origin, hook;
  before(async () => {
    origin = await startOrigin();
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url } });
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
  });

  test("every .eml fixture reaches the origin as its golden event", async () => {
    assert.ok(FIXTURES.length >= 6, `fixtures: ${FIXTURES}`);
    for (const name of FIXTURES) {
      const res = await hook.email(raw(name));
      assert.equal(res.status, 200, `${name}: ${res.text}`);
      const want = golden(name);
      const got = await waitFor(() => origin.deliveries.find((d) => d.id === want.id), { what: `${name} delivered` });
      const event = JSON.parse(got.body);
      assert.ok(Math.abs(Date.parse(event.time) - Date.now()) < 60_000, `${name}: time is when it arrived`);
      delete event.time;
      delete want.time;
      assert.deepEqual(event, want, `${name}: the Worker's event is the native golden one`);
    }
    // The large one (over a queue message's 128 KB) went through R2.
    assert.ok((await (await hook.r2()).list()).objects.length > 0, "the large message is stored in R2");
  });

  test("the same message handed over again is a duplicate, delivered once", async () => {
    const before = origin.deliveries.length;
    const res = await hook.email(raw("plain"));
    assert.equal(res.status, 200, res.text);
    await sleep(1500);
    assert.equal(origin.deliveries.length, before);
    assert.ok(emailLines(hook.logs).some((l) => l.status === "duplicate"), "logged as a duplicate");
    // Relayed again (new trace headers above the same message): still the same message.
    const relayed = Buffer.concat([Buffer.from("Received: from mx2 by cloudflare-email.net; Wed, 25 Nov 2026 12:00:00 +0000\r\n"), raw("plain")]);
    assert.equal((await hook.email(relayed)).status, 200);
    await sleep(1000);
    assert.equal(origin.deliveries.length, before);
  });

  test("a message with the same Message-ID but other content is not mistaken for it", async () => {
    const forged = Buffer.from(raw("plain").toString("latin1").replaceAll("did not arrive", "was refunded"), "latin1");
    assert.equal((await hook.email(forged)).status, 200);
    await waitFor(() => origin.deliveries.find((d) => d.event.data.inbound.text?.includes("was refunded")), { what: "the second message delivered" });
  });

  test("it has no webhook route, and /healthz lists it", async () => {
    const res = await hook.post("email-routing", "{}", { "content-type": "application/json" });
    assert.equal(res.status, 404);
    assert.ok(!res.json.error.message.includes("email-routing"), res.json.error.message);
    const health = await hook.request("/healthz");
    assert.equal(health.json.providers["email-routing"].configured, true);
  });
});

describe("Email Routing refusals and forwarding", () => {
  test("too large: refused for good with the reason (setReject); EMAIL_FORWARD_TO gets a copy of what is taken", async () => {
    // (Miniflare's forward always succeeds: the path of a copy that fails, only logged, is not exercised locally.)
    const origin = await startOrigin();
    const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url, MAX_BODY_BYTES: "4096", EMAIL_FORWARD_TO: "copy@example.com" } });
    try {
      const res = await hook.email(raw("large"));
      assert.equal(res.status, 400, res.text);
      assert.match(res.text, /message too large: this address takes messages of at most 4096 bytes/);
      assert.deepEqual(emailLines(hook.logs).map((l) => [l.status, l.code]), [["rejected", "payload_too_large"]]);

      const ok = await hook.email(raw("alternative"));
      assert.equal(ok.status, 200, ok.text);
      await waitFor(() => hook.logs.some((l) => l.includes("Email handler forwarded message") && l.includes("copy@example.com")), {
        what: "the forward",
      });
      await waitFor(() => origin.deliveries.length === 1, { what: "the event delivered" });
    } finally {
      await hook.dispose();
      await origin.close();
    }
  });

  test("destination filters apply to its mail, and can name it", async () => {
    const bounces = await startOrigin({ secret: SECRETS.ORIGIN_SIGNING_SECRET });
    const inbox = await startOrigin({ secret: SECRETS.ORIGIN_SIGNING_SECRET });
    const hook = await startMailhook({
      vars: {
        ORIGIN_URL: undefined,
        DESTINATIONS: [
          { name: "bounces", url: bounces.url, filter: { providers: ["maileroo"], types: ["email.bounced"] } },
          { name: "inbox", url: inbox.url, filter: { providers: ["email-routing"] } },
        ],
      },
      secrets: { DESTINATION_BOUNCES_SIGNING_SECRET: SECRETS.ORIGIN_SIGNING_SECRET, DESTINATION_INBOX_SIGNING_SECRET: SECRETS.ORIGIN_SIGNING_SECRET },
    });
    try {
      assert.equal((await hook.email(raw("plain"))).status, 200);
      await waitFor(() => inbox.deliveries.length === 1, { what: "the inbox destination's delivery" });
      await sleep(1000);
      assert.equal(bounces.deliveries.length, 0, "a destination of Maileroo bounces gets no inbound mail");
    } finally {
      await hook.dispose();
      await bounces.close();
      await inbox.close();
    }
  });

  test("cannot be queued: refused for now (the sender retries), no dedupe key, so the retry is taken", async () => {
    const hook = await startMailhook({ without: ["EVENTS"] });
    try {
      const res = await hook.email(raw("plain"));
      assert.equal(res.status, 500, `a throw, which Email Routing answers with a temporary SMTP failure: ${res.text}`);
      assert.deepEqual(emailLines(hook.logs).map((l) => [l.status, l.code]), [["deferred", "unavailable"]]);
      assert.equal((await (await hook.kv()).list()).keys.length, 0, "no dedupe key: the sender's retry is not a duplicate");
    } finally {
      await hook.dispose();
    }
  });

  test("a broken EMAIL_FORWARD_TO: /healthz says so, and mail is refused for now, not lost", async () => {
    const hook = await startMailhook({ vars: { EMAIL_FORWARD_TO: "Support <inbox@example.com>" } });
    try {
      const health = await hook.request("/healthz");
      assert.equal(health.status, 503);
      assert.match(health.json.error, /EMAIL_FORWARD_TO/);
      const res = await hook.email(raw("plain"));
      assert.equal(res.status, 500, res.text);
    } finally {
      await hook.dispose();
    }
  });
});
