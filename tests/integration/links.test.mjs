// Attachments by link: an origin behind a 1 MB body limit (nginx's default) gets a 20 MB message as a small
// event whose attachments are links to the Worker; each link, fetched over HTTP from the Worker on 127.0.0.1,
// gives the attachment's exact bytes; a tampered, expired or cross-event link is refused; a replay gives fresh
// links; and an attacker's HTML attachment, opened by link in Chromium, runs no script.
import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { SECRETS, chromiumPath, freePort, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const IMPROVMX = { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" };
const LINK_KEY = "it-link-signing-key-0123456789abcdef";
const LIMIT = 1024 * 1024;
const whsec = (label) => "whsec_" + Buffer.from(`integration-test-${label}-key`).toString("base64");

/** An ImprovMX email with `files` ({ name, bytes, type }) as attachments, to `to`. */
function email(label, files, to = "desk@example.org") {
  return JSON.stringify({
    headers: { "Delivered-To": to },
    to: [{ name: "Desk", email: to }],
    from: { name: "Sender", email: "sender@example.net" },
    subject: `${label}`,
    "message-id": `<links-${label}-${randomBytes(4).toString("hex")}@example.net>`,
    timestamp: Math.floor(Date.now() / 1000),
    text: "see attached",
    html: "<p>see attached</p>",
    inlines: [],
    attachments: files.map((f) => ({ type: f.type ?? "application/octet-stream", name: f.name, content: f.bytes.toString("base64") })),
  });
}

/** A link as the Worker signs it (links.rs): for links the test makes itself, valid but expired or to nothing. */
function signedLink(base, { object, start, end, expires, name }) {
  const sig = createHmac("sha256", LINK_KEY).update(JSON.stringify(["mailhook attachment link 1", object, start, end, expires, name, null])).digest("hex");
  return `${base}/attachments/${encodeURIComponent(name)}?o=${encodeURIComponent(object)}&r=${start}-${end}&x=${expires}&s=${sig}`;
}

describe("attachments by link", () => {
  let small, desk, hook, base, beacon;
  const beaconHits = [];
  before(async () => {
    // "small" refuses any body over 1 MB, as nginx's default client_max_body_size does.
    small = await startOrigin({ secret: whsec("small"), respond: (d) => (Buffer.byteLength(d.body) > LIMIT ? 413 : 204) });
    desk = await startOrigin({ secret: whsec("desk") });
    beacon = createServer((req, res) => {
      beaconHits.push(req.url);
      res.writeHead(204).end();
    });
    await new Promise((r) => beacon.listen(0, "127.0.0.1", r));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    hook = await startMailhook({
      listen: true,
      port,
      vars: {
        ORIGIN_URL: undefined,
        PUBLIC_URL: base,
        ORIGIN_TIMEOUT_SECONDS: "60",
        DESTINATIONS: [
          { name: "small", url: small.url, max_body_bytes: LIMIT, filter: { recipient_tags: ["big"] } },
          { name: "desk", url: desk.url, attachments: "link", filter: { recipient_tags: ["desk"] } },
        ],
        RECIPIENT_TAG_SEPARATOR: "+",
      },
      secrets: { DESTINATION_SMALL_SIGNING_SECRET: whsec("small"), DESTINATION_DESK_SIGNING_SECRET: whsec("desk"), LINK_SIGNING_KEY: LINK_KEY },
    });
  });
  after(async () => {
    await hook?.dispose();
    await small?.close();
    await desk?.close();
    beacon?.close();
  });

  let big;
  test("an origin with a 1 MB limit gets a 20 MB message as a small event, and each link gives the exact bytes", { timeout: 240_000 }, async () => {
    const files = [6, 5, 4].map((mb, i) => ({ name: `scan ${i} ё.bin`, bytes: randomBytes(mb * 1024 * 1024) }));
    files.push({ name: "tiny.txt", bytes: Buffer.from("small enough to stay in the event") });
    const body = email("big", files, "support+big@example.org");
    assert.ok(body.length > 20_000_000, `${body.length} bytes`);
    const r = await hook.post("improvmx", body, IMPROVMX);
    assert.equal(r.status, 200, r.text);
    const [id] = r.json.ids;
    const got = await waitFor(() => small.deliveries.find((d) => d.id === id), { ms: 180_000, what: "the linked delivery" });
    assert.ok(Buffer.byteLength(got.body) < 16 * 1024, `the event is ${got.body.length} bytes`);
    assert.equal(got.event.data.raw, undefined, "data.raw (the payload, holding the attachments again) is left out");
    assert.equal(got.event.data.inbound.text, "see attached");
    const attachments = got.event.data.inbound.attachments;
    assert.equal(attachments.length, files.length);
    for (const f of files) {
      const a = attachments.find((x) => x.filename === f.name);
      assert.equal(a.size, f.bytes.length, `${f.name}: size`);
      assert.equal(a.sha256, sha256(f.bytes), `${f.name}: sha256`);
      if (f.name === "tiny.txt") {
        assert.equal(Buffer.from(a.content_base64, "base64").toString(), f.bytes.toString(), "a tiny attachment stays in the event");
        continue;
      }
      assert.equal(a.content_base64, null);
      assert.ok(a.url.startsWith(`${base}/attachments/`), a.url);
      const res = await fetch(a.url);
      assert.equal(res.status, 200, `${f.name}: ${await res.clone().text().catch(() => "")}`);
      assert.equal(res.headers.get("content-type"), "application/octet-stream");
      assert.match(res.headers.get("content-disposition"), /^attachment; filename="scan \d _.bin"; filename\*=UTF-8''scan%20\d%20%D1%91.bin$/);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("content-length"), String(f.bytes.length), "a download cut short is seen");
      assert.match(res.headers.get("content-security-policy"), /^sandbox/);
      const bytes = Buffer.from(await res.arrayBuffer());
      assert.equal(bytes.length, f.bytes.length, `${f.name}: length fetched`);
      assert.equal(sha256(bytes), sha256(f.bytes), `${f.name}: bytes fetched`);
    }
    assert.equal(small.attempts.filter((d) => d.id === id).length, 1, "delivered on the first attempt, not refused with 413");
    big = { id, urls: attachments.filter((a) => a.url).map((a) => a.url), expires: Number(new URL(attachments[0].url).searchParams.get("x")) };
    // The links live a week (ATTACHMENT_LINK_SECONDS' default), within the retention of 30 days.
    assert.ok(Math.abs(big.expires - (Date.now() / 1000 + 7 * 86400)) < 600, `expires ${big.expires}`);
  });

  test("an origin with a 1 MB limit gets mail whose html is 700 KB without data.raw; a name of dots still has a link", { timeout: 60_000 }, async () => {
    const html = `<p>${"long newsletter ".repeat(45_000)}</p>`;
    const body = JSON.parse(email("html", [{ name: ". .", bytes: randomBytes(3000) }], "support+big@example.org"));
    body.html = html;
    const r = await hook.post("improvmx", JSON.stringify(body), IMPROVMX);
    assert.equal(r.status, 200, r.text);
    const got = await waitFor(() => small.deliveries.find((d) => d.id === r.json.ids[0]), { what: "the delivery without data.raw" });
    assert.equal(got.event.data.raw, undefined);
    assert.equal(got.event.data.inbound.html, html, "text and html stay in the event");
    const a = got.event.data.inbound.attachments[0];
    assert.match(a.url, /\/attachments\/attachment\?/, "a name of dots is served as `attachment`");
    const res = await fetch(a.url);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), a.sha256);
  });

  test("a tampered, expired, cross-event or foreign link is refused and says nothing of why", { timeout: 60_000 }, async () => {
    assert.ok(big, "the first test ran");
    const small2 = { name: "other.bin", bytes: randomBytes(50_000) };
    const r = await hook.post("improvmx", email("other", [small2], "support+desk@example.org"), IMPROVMX);
    assert.equal(r.status, 200, r.text);
    const other = await waitFor(() => desk.deliveries.find((d) => d.id === r.json.ids[0]), { what: "the other event" });
    const otherUrl = new URL(other.event.data.inbound.attachments[0].url);

    const url = new URL(big.urls[0]);
    const q = url.searchParams;
    const variants = {
      "another range": () => q.set("r", `0-${q.get("r").split("-")[1]}`),
      "a later expiry": () => q.set("x", String(big.expires + 86400)),
      "another event's object": () => q.set("o", otherUrl.searchParams.get("o")),
      "another name": () => (url.pathname = "/attachments/evil.html"),
      "a signature cut short": () => q.set("s", q.get("s").slice(0, 32)),
      "no signature": () => q.delete("s"),
      "the object of a manifest": () => q.set("o", q.get("o").replace(/body$/, "parts")),
    };
    const answers = new Set();
    for (const [what, change] of Object.entries(variants)) {
      const u = new URL(big.urls[0]);
      url.pathname = u.pathname;
      for (const [k, v] of u.searchParams) q.set(k, v);
      change();
      const res = await fetch(url);
      const text = await res.text();
      assert.equal(res.status, 403, `${what}: ${res.status} ${text}`);
      answers.add(text);
    }
    // Correctly signed by the Worker's key, but expired: the same answer.
    const { o, r: range } = Object.fromEntries(new URL(big.urls[0]).searchParams);
    const [start, end] = range.split("-").map(Number);
    const expired = await fetch(signedLink(base, { object: o, start, end, expires: Math.floor(Date.now() / 1000) - 5, name: "x.bin" }));
    assert.equal(expired.status, 403);
    answers.add(await expired.text());
    assert.equal(answers.size, 1, `one answer for every refusal: ${[...answers].join(" | ")}`);
    // Signed, but for an object that is not kept: 404.
    const gone = await fetch(signedLink(base, { object: "events/evt_none.0000000000000000.body", start: 0, end: 10, expires: 4102444800, name: "x.bin" }));
    assert.equal(gone.status, 404);
    // The other event's own link still works: it is its own.
    const res = await fetch(otherUrl);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(small2.bytes));
  });

  test("a destination taking links gets them for small events too, and a replay gives fresh ones", { timeout: 60_000 }, async () => {
    const file = { name: "notes.txt", bytes: Buffer.from("x".repeat(5000)) };
    const r = await hook.post("improvmx", email("replay", [file], "support+desk@example.org"), IMPROVMX);
    const [id] = r.json.ids;
    const first = await waitFor(() => desk.deliveries.find((d) => d.id === id), { what: "the first delivery" });
    const a1 = first.event.data.inbound.attachments[0];
    assert.equal(a1.content_base64, null);
    await waitFor(async () => (await hook.deliveries("desk")).some((d) => d.event_id === id && d.status === "delivered"), { what: "the delivery recorded" });
    await new Promise((r) => setTimeout(r, 1100));
    const replay = await hook.admin(`/admin/events/${id}/replay?destination=desk`, { method: "POST" });
    assert.equal(replay.status, 202, replay.text);
    const second = await waitFor(() => desk.deliveries.filter((d) => d.id === id)[1], { what: "the replay" });
    const a2 = second.event.data.inbound.attachments[0];
    const x = (a) => Number(new URL(a.url).searchParams.get("x"));
    assert.ok(x(a2) > x(a1), "the replay's links are made at its delivery");
    const bytes = Buffer.from(await (await fetch(a2.url)).arrayBuffer());
    assert.equal(bytes.toString(), file.bytes.toString());
  });

  test("an attacker's HTML attachment opened by its link runs no script in Chromium", { timeout: 60_000 }, async () => {
    const html = `<!doctype html><html><body><script>fetch("http://127.0.0.1:${beacon.address().port}/script-ran");alert(1)</script>` +
      `<img src="http://127.0.0.1:${beacon.address().port}/img-loaded"><!-- ${"padding ".repeat(200)} --></body></html>`;
    const r = await hook.post("improvmx", email("xss", [{ name: "invoice.html", type: "text/html", bytes: Buffer.from(html) }], "support+desk@example.org"), IMPROVMX);
    const got = await waitFor(() => desk.deliveries.find((d) => d.id === r.json.ids[0]), { what: "the HTML attachment's event" });
    const url = got.event.data.inbound.attachments[0].url;
    assert.ok(url, "linked");
    const browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
    try {
      const page = await browser.newPage({ acceptDownloads: true });
      const dialogs = [];
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        d.dismiss();
      });
      const download = page.waitForEvent("download", { timeout: 10_000 });
      await page.goto(url).catch(() => {}); // Chromium downloads it: the navigation is aborted
      const file = await download;
      assert.equal(file.suggestedFilename(), "invoice.html");
      // Even were it shown, the Worker's origin would not be its: the page is not the link's.
      await new Promise((r) => setTimeout(r, 1000));
      assert.notEqual(await page.title().catch(() => ""), "pwned");
      assert.deepEqual(dialogs, [], "no script ran");
      assert.deepEqual(beaconHits, [], "nothing was loaded from the attachment");
    } finally {
      await browser.close();
    }
  });

  test("the console shows a stored event, its attachments with fresh links, in Chromium", { timeout: 60_000 }, async () => {
    assert.ok(big, "the first test ran");
    const shown = await hook.admin(`/admin/events/${big.id}`);
    assert.equal(shown.status, 200);
    const inbound = shown.json.event.data.inbound;
    assert.match(inbound.attachments[3].content_base64, /^[A-Za-z0-9+/=]+$/, "the tiny one is in the event");
    const browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
    try {
      const page = await browser.newPage();
      await page.goto(`${base}/console/`);
      await page.fill("#signin input[name=token]", SECRETS.ADMIN_TOKEN);
      await page.keyboard.press("Enter");
      await page.waitForSelector("#total");
      await page.goto(`${base}/console/#/events/${encodeURIComponent(big.id)}`);
      await page.waitForSelector("#attachments a.download");
      const hrefs = await page.$$eval("#attachments a.download", (as) => as.map((a) => a.href));
      assert.equal(hrefs.length, 3, "one link per stored attachment");
      assert.ok(await page.$("#event-tree"), "the stored event's tree is shown");
      const x = Number(new URL(hrefs[0]).searchParams.get("x"));
      assert.ok(x <= Date.now() / 1000 + 3600 + 5, "a console link lives an hour");
      const bytes = Buffer.from(await (await fetch(hrefs[0])).arrayBuffer());
      const name = await page.$eval("#attachments tbody tr td", (td) => td.textContent);
      assert.equal(sha256(bytes), inbound.attachments.find((a) => a.filename === name).sha256);
    } finally {
      await browser.close();
    }
  });
});
