// The operator console in a real browser: headless Chromium (Debian's, via
// playwright-core) against the Worker under Miniflare with real events in it,
// delivered to a real origin. Sign in, the overview's counts, filters, an
// event's page, a dead letter replayed and delivered, and a subject that is
// HTML rendered as text. Screenshots go to test-output/console/.
// No browser is a failure, not a skip.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { SECRETS, admHeaders, chromiumPath, fixture, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const shots = path.join(root, "test-output", "console");
const XSS = "<img src=x onerror=alert(1)>";

describe("the console in Chromium", () => {
  let origin, hook, browser, page;
  const dialogs = [];
  const requested = [];
  let refuse = true;
  before(async () => {
    mkdirSync(shots, { recursive: true });
    // The origin refuses adm-tools `create` events for good (a dead letter each) until told otherwise.
    origin = await startOrigin({ respond: (d) => (refuse && d.event.type === "mailbox.message_added" ? 410 : 204) });
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url }, listen: true });
    const base = JSON.parse(fixture("adm-tools", "create"));
    for (let i = 0; i < 3; i++) {
      assert.equal((await hook.post("adm-tools", JSON.stringify({ ...base, uid: 700 + i }), admHeaders())).status, 200);
    }
    assert.equal((await hook.post("adm-tools", fixture("adm-tools", "new"), admHeaders())).status, 200);
    const mail = `From: Mallory <mallory@example.net>\r\nTo: inbox@mailhook.test\r\nSubject: ${XSS}\r\nMessage-ID: <xss-1@example.net>\r\nIn-Reply-To: <root-1@example.net>\r\nContent-Type: text/plain\r\n\r\n${XSS}\r\n`;
    assert.equal((await hook.email(Buffer.from(mail), { to: "inbox+t1@mailhook.test" })).status, 200);
    await waitFor(async () => (await hook.deadLetters()).length === 3 && origin.deliveries.length === 2, { ms: 30000, what: "3 dead letters and 2 deliveries" });

    browser = await chromium.launch({
      executablePath: chromiumPath(),
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      d.dismiss();
    });
    // Nothing may be loaded from anywhere but the Worker.
    page.on("request", (r) => {
      assert.ok(r.url().startsWith(hook.url), `the console requested ${r.url()}`);
      requested.push(r.url().split("#")[0]);
    });
  });
  after(async () => {
    await browser?.close();
    await hook?.dispose();
    await origin?.close();
  });

  test("sign in: a wrong token is refused, the right one opens the overview; the token is in no readable cookie", async () => {
    await page.goto(`${hook.url}/console/`);
    await page.fill("#signin input[name=token]", "wrong");
    await page.click("#signin button[type=submit]");
    await page.waitForSelector("[role=alert]:has-text('ADMIN_TOKEN')");
    // With the keyboard alone: focus, type, Enter.
    await page.focus("#signin input[name=token]");
    await page.keyboard.type(SECRETS.ADMIN_TOKEN);
    await page.keyboard.press("Enter");
    await page.waitForSelector("#total");
    assert.ok(requested.includes(`${hook.url}/console/`));
    assert.ok(!requested.some((u) => /\/console\/app\.(js|css)$/.test(u)), `the page is one request, its script and style inline: ${requested}`);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === "mailhook_session");
    assert.ok(session?.httpOnly && session.sameSite === "Strict", JSON.stringify(cookies));
    assert.ok(!session.value.includes(SECRETS.ADMIN_TOKEN));
    assert.equal(await page.evaluate(() => document.cookie), "", "no cookie readable by script");
    assert.ok(!page.url().includes(SECRETS.ADMIN_TOKEN));
  });

  test("the overview counts the last 24 hours by provider and outcome", async () => {
    await page.goto(`${hook.url}/console/#/`);
    await page.waitForSelector("#total");
    assert.equal(await page.textContent("#total"), "5 events in the last 24 hours");
    const count = (chart) =>
      page.$$eval(`#${chart} g[data-hour]`, (gs) => gs.reduce((n, g) => n + Number(g.getAttribute("data-count")), 0));
    assert.equal(await count("chart-providers"), 5);
    assert.equal(await count("chart-outcomes"), 5);
    await page.screenshot({ path: path.join(shots, "overview.png"), fullPage: true });
    // On a phone: nothing wider than the screen.
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    await phone.context().addCookies(await page.context().cookies());
    await phone.goto(`${hook.url}/console/#/`);
    await phone.waitForSelector("#total");
    assert.ok(await phone.evaluate(() => document.documentElement.scrollWidth <= 390), "the overview fits a 390 px screen");
    await phone.screenshot({ path: path.join(shots, "overview-phone.png"), fullPage: true });
    await phone.close();
  });

  test("the event log filters by provider and status", async () => {
    await page.goto(`${hook.url}/console/#/events?provider=adm-tools`);
    await page.waitForSelector("#events tbody tr");
    assert.equal(await page.$$eval("#events tbody tr", (rows) => rows.length), 4);
    await page.goto(`${hook.url}/console/#/events?status=dead`);
    await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 3);
    await page.screenshot({ path: path.join(shots, "events.png"), fullPage: true });
  });

  test("an event whose subject is HTML shows it as text", async () => {
    const xss = origin.deliveries.find((d) => d.event.source === "/providers/email-routing");
    await page.goto(`${hook.url}/console/#/events/${encodeURIComponent(xss.id)}`);
    await page.waitForSelector(`text=${XSS}`);
    assert.equal(await page.$$eval("img", (imgs) => imgs.length), 0, "no <img> was made from the subject");
    assert.deepEqual(dialogs, []);
    assert.equal(await page.textContent("#recipient-tag"), "t1");
    assert.equal(await page.textContent("#reply"), XSS, "the reply is text too");
    // What the destination receives, its body shown as text (the subject inside it too).
    await page.click('#bodies details[data-destination="origin"] summary');
    const body = await page.textContent('#bodies details[data-destination="origin"] pre');
    assert.equal(JSON.parse(body).id, xss.id);
    assert.ok(body.includes(XSS));
    assert.equal(await page.$$eval("img", (imgs) => imgs.length), 0, "nor from the body");
    await page.screenshot({ path: path.join(shots, "event.png"), fullPage: true });
    // The thread links to the event log of its conversation.
    await page.click("#thread a");
    await page.waitForFunction(() => location.hash.includes("thread=") && document.querySelectorAll("#events tbody tr").length === 1);
    assert.equal(await page.inputValue("#f-thread"), "<root-1@example.net>");
  });

  test("the dead letters are replayed from the console and delivered", async () => {
    refuse = false;
    await page.goto(`${hook.url}/console/#/dead`);
    await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 3);
    await page.screenshot({ path: path.join(shots, "dead.png"), fullPage: true });
    await page.click("#replay-dead");
    await page.waitForSelector("[role=status]:has-text('Replayed 3')");
    await waitFor(() => origin.deliveries.filter((d) => d.event.type === "mailbox.message_added").length === 3, { what: "the 3 replayed events delivered" });
  });

  test("a cross-site request cannot use the session, and the console is off without ADMIN_TOKEN", async () => {
    const cookie = (await page.context().cookies()).find((c) => c.name === "mailhook_session");
    const asForm = await fetch(`${hook.url}/admin/replay?status=dead`, { method: "POST", headers: { cookie: `mailhook_session=${cookie.value}` } });
    assert.equal(asForm.status, 401, "a session without the console's header (a form of another site)");
    // A sign-in is small: a large body is refused unread (it would grow the isolate's memory for good).
    const big = await fetch(`${hook.url}/console/session`, {
      method: "POST",
      headers: { "x-mailhook-console": "1", "content-type": "application/json" },
      body: JSON.stringify({ token: "a".repeat(100_000) }),
    });
    assert.equal(big.status, 400);
    assert.match((await big.json()).error.message, /at most 4096 bytes/);
    // Refusals under /console/ carry its headers too.
    const missing = await fetch(`${hook.url}/console/nope`);
    assert.equal(missing.status, 404);
    assert.ok(missing.headers.get("content-security-policy") && missing.headers.get("x-frame-options") === "DENY");
    const res = await fetch(`${hook.url}/console/`);
    assert.match(res.headers.get("content-security-policy"), /^default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+';/);
    const off = await startMailhook({ secrets: { ADMIN_TOKEN: undefined } });
    try {
      assert.equal((await off.request("/console/")).status, 404);
    } finally {
      await off.dispose();
    }
  });
});
