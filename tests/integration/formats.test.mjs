// Each destination's format: CloudEvents HTTP binary mode (read back by the official CloudEvents SDK) and a
// Slack-compatible message with what the sender wrote escaped, beside the structured default, each signed with the
// destination's own Standard Webhooks key, `webhook-id` the event id.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { HTTP } from "cloudevents";
import { admHeaders, authHeaders, fixture, freePort, rawOrigin, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const whsec = (label) => "whsec_" + Buffer.from(`integration-test-${label}-key`).toString("base64");
const IMPROVMX = { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" };
const MAIL_PLUS_IP = "198.51.100.7";
const HOSTILE = "<!channel> & <https://evil.example|click here> *bold*";

function mail(label, attachmentBytes) {
  return JSON.stringify({
    headers: { "Delivered-To": "desk@example.org" },
    to: [{ name: "Desk", email: "desk@example.org" }],
    from: { name: "Mallory", email: "mallory@example.net" },
    subject: `${label} ${HOSTILE}`,
    "message-id": `<formats-${label}-${randomBytes(4).toString("hex")}@example.net>`,
    timestamp: Math.floor(Date.now() / 1000),
    text: "hello",
    attachments: attachmentBytes ? [{ type: "application/octet-stream", name: "a.bin", content: attachmentBytes.toString("base64") }] : [],
  });
}

describe("formats", () => {
  let plain, binary, slack, raw, hook, base;
  before(async () => {
    plain = await startOrigin({ secret: whsec("plain") });
    binary = await rawOrigin(whsec("binary"));
    slack = await rawOrigin(whsec("slack"));
    raw = await rawOrigin(whsec("raw"));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hook = await startMailhook({
      listen: true,
      port,
      vars: {
        ORIGIN_URL: undefined,
        PUBLIC_URL: base,
        MAIL_PLUS_VERIFY: "ip",
        MAIL_PLUS_ALLOWED_IPS: MAIL_PLUS_IP,
        DESTINATIONS: [
          { name: "plain", url: plain.url },
          { name: "binary", url: binary.url, format: "CloudEvents-Binary" },
          { name: "slack", url: slack.url, format: "slack" },
          { name: "raw", url: raw.url, format: "provider" },
        ],
      },
      secrets: {
        DESTINATION_PLAIN_SIGNING_SECRET: whsec("plain"),
        DESTINATION_BINARY_SIGNING_SECRET: whsec("binary"),
        DESTINATION_SLACK_SIGNING_SECRET: whsec("slack"),
        DESTINATION_RAW_SIGNING_SECRET: whsec("raw"),
      },
    });
  });
  after(async () => {
    await hook?.dispose();
    for (const o of [plain, binary, slack, raw]) await o?.close();
  });

  for (const [label, bytes] of [["small", null], ["large", randomBytes(400_000)]]) {
    test(`binary mode (${label} event) is read back by the CloudEvents SDK as the structured event`, { timeout: 60_000 }, async () => {
      const r = await hook.post("improvmx", mail(label, bytes), IMPROVMX);
      assert.equal(r.status, 200, r.text);
      const [id] = r.json.ids;
      const structured = await waitFor(() => plain.deliveries.find((d) => d.id === id), { what: "the structured delivery" });
      const got = await waitFor(() => binary.requests.find((q) => q.headers["webhook-id"] === id), { what: "the binary delivery" });
      assert.equal(got.headers["content-type"], "application/json");
      assert.equal(got.headers["ce-id"], id);
      const ce = HTTP.toEvent({ headers: got.headers, body: got.body });
      assert.equal(ce.id, id);
      assert.equal(ce.type, "email.received");
      assert.equal(ce.source, structured.event.source);
      assert.equal(ce.specversion, "1.0");
      assert.equal(ce.subject, structured.event.subject, "a Message-ID survives percent-encoding");
      assert.deepEqual(ce.data, structured.event.data);
      assert.deepEqual(binary.invalid, []);
    });
  }

  test("slack: who wrote to whom about what, escaped, with a link to the event in the console", { timeout: 60_000 }, async () => {
    const r = await hook.post("improvmx", mail("slack", null), IMPROVMX);
    const [id] = r.json.ids;
    const got = await waitFor(() => slack.requests.find((q) => q.headers["webhook-id"] === id), { what: "the Slack message" });
    assert.equal(got.headers["content-type"], "application/json");
    const message = JSON.parse(got.body);
    assert.deepEqual(Object.keys(message), ["text"]);
    const { text } = message;
    assert.ok(text.length <= 40_000);
    assert.match(text, /^\*email\.received\* from improvmx\nmallory@example\.net → desk@example\.org\n/);
    assert.ok(text.includes("“slack &lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt; *bold*”"), text);
    // Slack's markup: every `<…>` is the Worker's own link; nothing the sender wrote makes one, nor a mention.
    const links = [...text.matchAll(/<([^>]*)>/g)].map((m) => m[1]);
    assert.deepEqual(links, [`${base}/console/#/events/${id}|Open in mailhook`]);
    assert.deepEqual(slack.invalid, []);
  });

  test("provider: the payload's bytes exactly as posted, from each webhook source, small or large, and Email Routing's raw message", { timeout: 60_000 }, async () => {
    const v = JSON.parse(fixture("mailtura", "delivered"));
    v.timestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    const mailtura = `\n  ${JSON.stringify(v, null, 3)}\t\n`; // odd white space, kept
    const m = JSON.parse(fixture("maileroo", "delivered"));
    m.event_time = Math.floor(Date.now() / 1000);
    const maileroo = JSON.stringify(m, null, 1);
    const mailPlus = fixture("mail-plus", "unicode").toString("utf8");
    const adm = fixture("adm-tools", "new-unicode").toString("utf8");
    const sources = [
      ["mailtura", mailtura, authHeaders("mailtura", mailtura)],
      ["maileroo", maileroo, authHeaders("maileroo", maileroo)],
      ["improvmx", mail("raw", randomBytes(300_000)), IMPROVMX],
      ["mail-plus", mailPlus, { "content-type": "application/json", "cf-connecting-ip": MAIL_PLUS_IP }],
      ["adm-tools", adm, admHeaders()],
    ];
    for (const [provider, body, headers] of sources) {
      const r = await hook.post(provider, body, headers);
      assert.equal(r.status, 200, r.text);
      const got = await waitFor(() => raw.requests.find((q) => q.headers["webhook-id"] === r.json.ids[0]), { what: `${provider}'s payload` });
      assert.equal(got.body, body, `${provider}: the bytes as posted`);
      assert.equal(got.headers["content-type"], "application/json");
    }
    // Email Routing's payload is the raw message: its bytes as the Worker received them, as message/rfc822.
    const message = "From: a@example.net\r\nTo: inbox@mailhook.test\r\nSubject: raw =?utf-8?q?caf=C3=A9?=\r\n" +
      "Message-ID: <raw-1@example.net>\r\nX-Odd:   kept  as is \r\n\r\nhello\r\n\r\n";
    const taken = await hook.email(Buffer.from(message));
    assert.equal(taken.status, 200, taken.text);
    const got = await waitFor(() => raw.requests.find((q) => q.headers["content-type"] === "message/rfc822"), { what: "the raw message" });
    assert.equal(got.body, message, "the message byte for byte");
    const health = await hook.request("/healthz");
    assert.ok(!health.text.includes("takes format provider"), "no warning: Email Routing's mail has its payload");
    assert.deepEqual(raw.invalid, []);
  });
});
