// Each destination's `transform`, a jq program over the canonical event: one that filters (a Slack alert for
// bounces only), one that reshapes (a CRM's own shape), one that fails at run time (dead, then delivered by a
// replay once the program is fixed), one that would loop (ended by its step budget), and one that does not
// compile (/healthz and every webhook answer 503 naming the destination). Every body is signed as any other.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { authHeaders, fixture, rawOrigin, root, SECRETS, startMailhook, waitFor } from "./harness.mjs";

const whsec = (label) => "whsec_" + Buffer.from(`integration-test-${label}-key`).toString("base64");

const PROGRAMS = {
  alerts: 'select(.type == "email.bounced") | {text: "Bounce for \\(.data.recipient): \\(.data.bounce.reason)"}',
  crm: "{contact: .data.recipient, event: (.type | ltrimstr(\"email.\")), at: .time, provider: .data.provider}",
  broken: "{subject: .data.subject | ascii_downcase}",
  looping: "{n: last(range(1e15))}",
};
const FIXED = "{subject: (.data.subject // \"(none)\")}";

function mailtura(type, n) {
  const v = JSON.parse(fixture("mailtura", type));
  v.id = `evt_transform_${type}_${n}_${Date.now()}`;
  v.timestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const body = JSON.stringify(v);
  return ["mailtura", body, authHeaders("mailtura", body)];
}

/** mailhook with one destination per program, each its own origin and key, kept in `persist` across restarts. */
async function start(origins, persist, programs) {
  const names = Object.keys(programs);
  return startMailhook({
    persist,
    vars: { ORIGIN_URL: undefined, DESTINATIONS: names.map((name) => ({ name, url: origins[name].url, transform: programs[name] })) },
    secrets: Object.fromEntries(names.map((name) => [`DESTINATION_${name.toUpperCase()}_SIGNING_SECRET`, whsec(name)])),
  });
}

describe("transforms", () => {
  const origins = {};
  let hook, persist;
  // None until the consumer logs the event (its first step, usually within a second of acceptance: 404 before).
  const deliveries = async (id) => (await hook.admin(`/admin/events/${id}`)).json?.deliveries ?? [];
  const delivery = async (id, name) => (await deliveries(id)).find((d) => d.destination === name);

  before(async () => {
    persist = mkdtempSync(path.join(tmpdir(), "mailhook-transforms-"));
    for (const name of Object.keys(PROGRAMS)) origins[name] = await rawOrigin(whsec(name));
    hook = await start(origins, persist, PROGRAMS);
  });
  after(async () => {
    await hook?.dispose();
    for (const o of Object.values(origins)) await o.close();
    rmSync(persist, { recursive: true, force: true });
  });

  test("a filter sends bounces only (the rest recorded as filtered), a reshape sends its own shape, signed", { timeout: 60_000 }, async () => {
    const bounced = await hook.post(...mailtura("bounced", 1));
    const delivered = await hook.post(...mailtura("delivered", 1));
    assert.equal(bounced.status, 200, bounced.text);
    const [b, d] = [bounced.json.ids[0], delivered.json.ids[0]];
    const alert = await waitFor(() => origins.alerts.requests.find((q) => q.headers["webhook-id"] === b), { what: "the bounce alert" });
    assert.deepEqual(JSON.parse(alert.body), { text: "Bounce for user@example.com: Mailbox does not exist" });
    assert.equal(alert.headers["content-type"], "application/json");
    await waitFor(async () => (await delivery(d, "alerts"))?.status === "filtered", { what: "the delivered event filtered out" });
    assert.ok(!origins.alerts.requests.some((q) => q.headers["webhook-id"] === d), "nothing sent for a filtered event");
    const f = await delivery(d, "alerts");
    assert.equal(f.attempts, 0, "a filtered delivery is no attempt");
    for (const id of [b, d]) {
      const got = await waitFor(() => origins.crm.requests.find((q) => q.headers["webhook-id"] === id), { what: "the CRM's shape" });
      const body = JSON.parse(got.body);
      assert.deepEqual(Object.keys(body).sort(), ["at", "contact", "event", "provider"]);
      assert.equal(body.contact, "user@example.com");
      assert.equal(body.provider, "mailtura");
      assert.ok(["bounced", "delivered"].includes(body.event));
    }
    assert.deepEqual(origins.alerts.invalid, []);
    assert.deepEqual(origins.crm.invalid, []);
    const listed = (await hook.admin("/admin/events?status=filtered&destination=alerts")).json.events.map((e) => e.id);
    assert.ok(listed.includes(d));
  });

  test("a program that fails on an event, or would loop, dead-letters that delivery with the error; fixed, a replay delivers it", { timeout: 90_000 }, async () => {
    const r = await hook.post(...mailtura("bounced", 2));
    const id = r.json.ids[0];
    await waitFor(async () => (await delivery(id, "broken"))?.status === "dead", { what: "the broken transform's delivery dead" });
    await waitFor(async () => (await delivery(id, "looping"))?.status === "dead", { what: "the looping transform's delivery dead" });
    const broken = await delivery(id, "broken");
    assert.equal(broken.attempts, 1, "dead at once: trying again cannot help");
    assert.match(broken.last_error, /^the transform of destination broken: the transform failed: .*null/);
    const looping = await delivery(id, "looping");
    assert.match(looping.last_error, /took more than 1000000 steps/);
    const sent = [...origins.broken.requests, ...origins.looping.requests].filter((q) => q.headers["webhook-id"] === id);
    assert.equal(sent.length, 0, "nothing sent");
    // The circuit does not count a transform's failure against the destination.
    const health = (await hook.request("/healthz")).json;
    assert.equal(health.destinations.broken.circuit, "closed");
    // The program fixed (a new version deployed): the replay applies the current program.
    await hook.dispose();
    hook = await start(origins, persist, { ...PROGRAMS, broken: FIXED });
    const replay = await hook.admin(`/admin/events/${id}/replay?destination=broken`, { method: "POST" });
    assert.equal(replay.status, 202, replay.text);
    const got = await waitFor(() => origins.broken.requests.find((q) => q.headers["webhook-id"] === id), { what: "the replay" });
    assert.deepEqual(JSON.parse(got.body), { subject: "(none)" });
    await waitFor(async () => (await delivery(id, "broken"))?.status === "delivered", { what: "the replay recorded" });
  });
});

test("a transform that does not compile, or that recurses, makes /healthz and every webhook answer 503 naming the destination", { timeout: 60_000 }, async () => {
  for (const [program, message] of [
    ["{a: .b", /destination "crm": transform: syntax error at line 1, column 7: expected closing brace/],
    [".data | nosuch(1)", /destination "crm": transform: no such filter nosuch\/1 \(at line 1, column 9\)/],
    ["def f: f; f", /destination "crm": transform: f\/0 calls itself/],
    ["input", /destination "crm": transform: input is not available in a transform/],
  ]) {
    const hook = await startMailhook({
      vars: { ORIGIN_URL: undefined, DESTINATIONS: [{ name: "crm", url: "https://crm.example/hook", transform: program }] },
      secrets: { DESTINATION_CRM_SIGNING_SECRET: whsec("crm") },
      consumers: false,
    });
    try {
      const health = await hook.request("/healthz");
      assert.equal(health.status, 503);
      assert.match(health.json.error, message);
      const r = await hook.post(...mailtura("delivered", 3));
      assert.equal(r.status, 503);
      assert.match(r.json.error.message, message);
    } finally {
      await hook.dispose();
    }
  }
});

test("an event every destination's transform leaves out is `filtered`, and the CLI prints what a destination receives", { timeout: 60_000 }, async () => {
  const only = await rawOrigin(whsec("only"));
  const hook = await startMailhook({
    listen: true,
    vars: { ORIGIN_URL: undefined, DESTINATIONS: [{ name: "only", url: only.url, transform: PROGRAMS.alerts }] },
    secrets: { DESTINATION_ONLY_SIGNING_SECRET: whsec("only") },
  });
  try {
    const r = await hook.post(...mailtura("delivered", 4));
    const id = r.json.ids[0];
    await waitFor(async () => (await hook.admin(`/admin/events/${id}`)).json.status === "filtered", { what: "the event filtered" });
    const cli = (...args) => execFileSync("node", ["scripts/mailhook.mjs", "transform", ...args, "--url", hook.url], {
      cwd: root, encoding: "utf8", env: { ...process.env, ADMIN_TOKEN: SECRETS.ADMIN_TOKEN },
    });
    assert.match(cli("only", id), /filtered/);
    const out = cli("only", "mailtura/bounced");
    assert.match(out, /^content-type: application\/json\n/);
    assert.deepEqual(JSON.parse(out.slice(out.indexOf("\n\n") + 2)), { text: "Bounce for user@example.com: Mailbox does not exist" });
    const bodies = (await hook.admin(`/admin/events/${id}/bodies`)).json.bodies;
    assert.deepEqual(bodies.map((b) => [b.destination, b.filtered]), [["only", true]]);
    assert.equal(only.requests.length, 0);
  } finally {
    await hook.dispose();
    await only.close();
  }
});
