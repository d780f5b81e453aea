// Large events: a 25 MB ImprovMX email is too big for a queue message, so it
// travels through R2 and must reach the origin with every attachment
// byte-identical; the R2 object stays, referenced by the event log, until retention.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { test } from "node:test";
import { startMailhook, startOrigin, waitFor } from "./harness.mjs";

const sha256 = (b) => createHash("sha256").update(b).digest("hex");

test("a 25 MB inbound email reaches the origin with every attachment byte-identical", { timeout: 180_000 }, async () => {
  const files = [7, 6, 5].map((mb, i) => ({ name: `part-${i}.bin`, bytes: randomBytes(mb * 1024 * 1024 + i) }));
  const inline = { name: "logo.png", bytes: randomBytes(200 * 1024) };
  const body = JSON.stringify({
    headers: { "Delivered-To": "big@example.org", "Received-SPF": ["pass (x) client-ip=192.0.2.9;"] },
    to: [{ name: "Big", email: "big@example.org" }],
    from: { name: "Sender", email: "sender@example.net" },
    subject: "25 MB of attachments",
    "message-id": "<large-25mb@example.net>",
    timestamp: Math.floor(Date.now() / 1000),
    text: "see attached",
    inlines: [{ type: "image/png", name: inline.name, content: inline.bytes.toString("base64"), cid: "logo" }],
    attachments: files.map((f) => ({ type: "application/octet-stream", name: f.name, content: f.bytes.toString("base64"), encoding: "binary" })),
  });
  assert.ok(body.length > 24_000_000 && body.length < 33_554_432, `body is ${body.length} bytes`);

  const origin = await startOrigin();
  const hook = await startMailhook({ vars: { ORIGIN_URL: origin.url, ORIGIN_TIMEOUT_SECONDS: "60" } });
  try {
    const r = await hook.post("improvmx", body, { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" });
    assert.equal(r.status, 200, r.text);
    const [id] = r.json.ids;
    const d = await waitFor(() => origin.deliveries.find((x) => x.id === id), { ms: 120_000, what: "the large delivery" });
    const got = d.event.data.inbound.attachments;
    assert.equal(got.length, 4);
    for (const want of [inline, ...files]) {
      const a = got.find((x) => x.filename === want.name);
      assert.ok(a, `${want.name} is missing`);
      assert.equal(a.size, want.bytes.length, `${want.name} size`);
      assert.equal(sha256(Buffer.from(a.content_base64, "base64")), sha256(want.bytes), `${want.name} bytes`);
    }
    assert.equal(got.find((x) => x.filename === inline.name).inline, true);
    // Delivered; the R2 copy stays for replay and the log references it.
    const bucket = await hook.r2();
    assert.ok(await bucket.head(`events/${id}.json`));
    const row = await waitFor(async () => {
      const r = await hook.admin(`/admin/events/${id}`);
      return r.json?.status === "delivered" ? r.json : null;
    });
    assert.equal(row.payload_ref, `events/${id}.json`);
  } finally {
    await hook.dispose();
    await origin.close();
  }
});
