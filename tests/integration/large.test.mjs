// Large email: a 25 MB and a 32 MiB ImprovMX email (MAX_BODY_BYTES is 32 MiB)
// with several attachments are accepted, stored once in R2 (the body, and a
// manifest of the event's parts), streamed to the origin with every attachment and `data.raw`
// byte-identical and a valid signature, and replayed from R2 the same way.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { startMailhook, startOrigin, waitFor } from "./harness.mjs";

const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const IMPROVMX = { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" };

/** An ImprovMX email whose attachments have `sizes` random bytes each, and its parts. */
function email(label, sizes) {
  const files = sizes.map((n, i) => ({ name: `${label}-part-${i}.bin`, bytes: randomBytes(n) }));
  const inline = { name: `${label}-logo.png`, bytes: randomBytes(200 * 1024) };
  const body = JSON.stringify({
    headers: { "Delivered-To": "big@example.org", "Received-SPF": ["pass (x) client-ip=192.0.2.9;"] },
    to: [{ name: "Big", email: "big@example.org" }],
    from: { name: "Sender", email: "sender@example.net" },
    subject: `${label} of attachments`,
    "message-id": `<large-${label}@example.net>`,
    timestamp: Math.floor(Date.now() / 1000),
    text: "see attached\nline \"two\" é",
    html: "<p>see attached</p>",
    inlines: [{ type: "image/png", name: inline.name, content: inline.bytes.toString("base64"), cid: "logo" }],
    attachments: files.map((f) => ({ type: "application/octet-stream", name: f.name, content: f.bytes.toString("base64"), encoding: "binary" })),
  });
  return { body, files, inline };
}

/** Checks one delivery of `mail` byte for byte. */
function assertIdentical(delivery, mail) {
  const got = delivery.event.data.inbound.attachments;
  assert.equal(got.length, mail.files.length + 1);
  for (const want of [mail.inline, ...mail.files]) {
    const a = got.find((x) => x.filename === want.name);
    assert.ok(a, `${want.name} is missing`);
    assert.equal(a.size, want.bytes.length, `${want.name} size`);
    assert.equal(sha256(Buffer.from(a.content_base64, "base64")), sha256(want.bytes), `${want.name} bytes`);
  }
  assert.equal(got.find((x) => x.filename === mail.inline.name).inline, true);
  assert.equal(delivery.event.data.inbound.text, "see attached\nline \"two\" é");
  assert.equal(sha256(JSON.stringify(delivery.event.data.raw)), sha256(JSON.stringify(JSON.parse(mail.body))), "data.raw");
}

describe("large email", () => {
  let origin, hook;
  before(async () => {
    origin = await startOrigin();
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url, ORIGIN_TIMEOUT_SECONDS: "60" } });
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
  });

  for (const [label, sizes, min, max] of [
    ["25MB", [7, 6, 5].map((mb) => mb * 1024 * 1024), 24_000_000, 26_000_000],
    ["32MiB", [9_000_000, 8_000_000, 7_000_000, 640_000], 33_000_000, 33_554_432],
  ]) {
    test(`a ${label} email is delivered byte-identical from R2, and replayed the same`, { timeout: 240_000 }, async () => {
      const mail = email(label, sizes);
      assert.ok(mail.body.length > min && mail.body.length <= max, `body is ${mail.body.length} bytes`);
      const r = await hook.post("improvmx", mail.body, IMPROVMX);
      assert.equal(r.status, 200, r.text);
      const [id] = r.json.ids;
      const first = await waitFor(() => origin.deliveries.find((x) => x.id === id), { ms: 180_000, what: "the large delivery" });
      assertIdentical(first, mail);

      // Stored once: the body as it came, and a small manifest, referenced by the event log for replay.
      const row = await waitFor(async () => {
        const a = await hook.admin(`/admin/events/${id}`);
        return a.json?.status === "delivered" ? a.json : null;
      });
      assert.match(row.payload_ref, new RegExp(`^events/${id}\\.[0-9a-f]{16}\\.parts$`));
      const bucket = await hook.r2();
      const stored = (await bucket.list({ prefix: `events/${id}.` })).objects.map((o) => o.key).sort();
      assert.deepEqual(stored, [row.payload_ref.replace(/parts$/, "body"), row.payload_ref], "one copy: the body and its manifest");
      assert.equal((await bucket.head(row.payload_ref.replace(/parts$/, "body")))?.size, Buffer.byteLength(mail.body), "the body, once");
      const manifest = await bucket.head(row.payload_ref);
      assert.ok(manifest && manifest.size < 64 * 1024, `a manifest of ${manifest?.size} bytes`);

      const replay = await hook.admin(`/admin/events/${id}/replay`, { method: "POST" });
      assert.equal(replay.status, 202, replay.text);
      const again = await waitFor(() => origin.deliveries.filter((x) => x.id === id)[1], { ms: 180_000, what: "the replay" });
      assertIdentical(again, mail);
    });
  }

  test("two copies of one event accepted at once: the origin gets it once, as one copy was received (found in review: they shared R2 objects)", { timeout: 120_000 }, async () => {
    const attachment = randomBytes(400_000).toString("base64");
    for (let pair = 0; pair < 4; pair++) {
      const copy = (timestamp, pad) => JSON.stringify({
        headers: { "Delivered-To": "race@example.org" }, to: [{ name: null, email: "race@example.org" }],
        from: { name: null, email: "s@example.net" }, subject: `race ${pair}`, "message-id": `<race-${pair}@example.net>`,
        timestamp, text: "x", attachments: [{ type: "application/octet-stream", name: "a.bin", content: attachment }],
      }, null, pad);
      const bodies = [copy(1, 0), copy(1_700_000_000, 2)];
      const answers = await Promise.all(bodies.map((b) => hook.post("improvmx", b, IMPROVMX)));
      const accepted = answers.filter((a) => a.json?.status === "accepted").length;
      const id = answers[0].json.ids[0];
      assert.equal(answers[1].json.ids[0], id, "one event id");
      assert.ok(accepted >= 1);
      await waitFor(() => origin.deliveries.some((d) => d.id === id), { what: `the delivery of ${id}` });
      await waitFor(async () => (await hook.deliveries()).every((d) => d.status === "delivered"), { what: "both copies settled" });
      const raws = origin.deliveries.filter((d) => d.id === id).map((d) => d.event.data.raw.timestamp);
      // The second copy finds the delivery done (or its twin in the same batch) and is not sent again.
      assert.equal(raws.length, 1, `${accepted} copies accepted, delivered once`);
      assert.ok([1, 1_700_000_000].includes(raws[0]), "with the bytes of one copy, not a mix");
    }
  });

  test("an event stored in R2 whose enqueue fails is refused (503) and its objects are removed", { timeout: 60_000 }, async () => {
    const broken = await startMailhook({ vars: { ORIGIN_URL: origin.url }, without: ["EVENTS"] });
    try {
      const mail = email("no-queue", [300 * 1024]);
      const r = await broken.post("improvmx", mail.body, IMPROVMX);
      assert.equal(r.status, 503, r.text);
      assert.match(r.json.error.message, /could not enqueue the event; nothing was accepted, please retry/);
      const listed = await (await broken.r2()).list({ prefix: "events/" });
      assert.deepEqual(listed.objects.map((o) => o.key), [], "no object is left that nothing refers to");
    } finally {
      await broken.dispose();
    }
  });

  test("a body over MAX_BODY_BYTES is refused with 413 before it is read", async () => {
    const r = await hook.post("improvmx", "x".repeat(33_554_433), IMPROVMX);
    assert.equal(r.status, 413);
    assert.equal(r.json.error.code, "payload_too_large");
  });
});
