// `npm run mailhook -- …` against a listening mailhook on 127.0.0.1.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { SECRETS, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../scripts/mailhook.mjs");
const run = (args, env) => promisify(execFile)("node", [cli, ...args], { env: { ...process.env, ...env } });

describe("the mailhook command line", () => {
  let origin, hook, env;
  before(async () => {
    origin = await startOrigin();
    hook = await startMailhook({ vars: { ORIGIN_URL: origin.url }, listen: true });
    env = { MAILHOOK_URL: hook.url, ...SECRETS };
  });
  after(async () => {
    await hook?.dispose();
    await origin?.close();
  });

  test("send signs or authenticates like each provider, and each send is a new event", async () => {
    for (const provider of ["maileroo", "mailtura", "adm-tools", "improvmx"]) {
      const { stdout } = await run(["send", provider], env);
      assert.match(stdout, /^200 .*"accepted"/, `${provider}: ${stdout}`);
    }
    const typed = await run(["send", "maileroo", "--type", "opened"], env);
    assert.match(typed.stdout, /"accepted"/);
    // Mail-Plus is verified by reverse DNS (unreachable here): refused, and the exit code says so.
    await assert.rejects(run(["send", "mail-plus", "--ip", "192.0.2.1"], env), (e) => e.code === 1 && /^(403|503) /.test(e.stdout));
    await waitFor(() => origin.deliveries.length >= 5, { what: "5 deliveries" });
    assert.ok(origin.deliveries.some((d) => d.event.type === "email.opened" && d.event.source === "/providers/maileroo"));
  });

  test("a named fixture sent twice is a duplicate", async () => {
    const a = await run(["send", "adm-tools", "create"], env);
    const b = await run(["send", "adm-tools", "create"], env);
    assert.match(a.stdout, /"accepted"/);
    assert.match(b.stdout, /"duplicate"/);
  });

  test("export pages through the log as JSON lines or CSV", async () => {
    await waitFor(async () => (await run(["export", "--status", "delivered", "--format", "csv"], env)).stdout.trim().split("\n").length >= 6);
    const { stdout } = await run(["export", "--limit", "3"], env);
    const lines = stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    const page2 = await run(["export", "--limit", "2", "--page", "2"], env);
    assert.equal(page2.stdout.trim().split("\n").length, 2);
    const csv = await run(["export", "--provider", "maileroo", "--format", "csv"], env);
    const rows = csv.stdout.trim().split("\n");
    assert.equal(rows[0], "id,provider,type,received_at,status,attempts,last_status,last_error,payload_ref,updated_at,deliveries");
    assert.equal(rows.length, 3, "a header and two maileroo events");
    assert.match(rows[1], /,origin:delivered:1$/);
    const byDestination = await run(["export", "--destination", "origin", "--status", "delivered", "--limit", "2"], env);
    assert.equal(byDestination.stdout.trim().split("\n").length, 2);
  });

  test("replay by id, and errors that say what to do", async () => {
    const [first] = (await run(["export", "--limit", "1"], env)).stdout.trim().split("\n").map((l) => JSON.parse(l));
    const r = await run(["replay", first.id], env);
    assert.deepEqual(JSON.parse(r.stdout), { status: "replayed", ids: [first.id], destinations: ["origin"] });
    // While the first replay is on its way, a second is refused (it would send twice); once it is recorded, taken.
    let to;
    await waitFor(async () => {
      to = await run(["replay", first.id, "--destination", "origin"], env).catch((e) => {
        if (/still on its way/.test(e.stderr)) return null;
        throw e;
      });
      return to !== null;
    }, { what: "the first replay delivered, so a second is taken" });
    assert.deepEqual(JSON.parse(to.stdout).destinations, ["origin"]);
    await assert.rejects(run(["replay", first.id, "--destination", "crm"], env), /there is no destination "crm"; the destinations are origin/);
    const listed = await run(["destinations"], env);
    assert.match(listed.stdout, /^origin  http:\/\/127\.0\.0\.1:\d+\/events\n  takes: every provider \/ every type\n  format: cloudevents, attachments: in the event\n  circuit: closed/);
    const dead = await run(["replay", "--dead"], env);
    assert.deepEqual(JSON.parse(dead.stdout), { status: "replayed", count: 0 });
    await assert.rejects(run(["export"], { ...env, ADMIN_TOKEN: "wrong" }), /does not match ADMIN_TOKEN/);
    // The CLI's provider table lists exactly the Worker's sources (the registry).
    const sources = Object.keys((await hook.request("/healthz")).json.providers).sort();
    await assert.rejects(run(["send", "nobody"], env), (e) => {
      const listed = e.stderr.match(/one of (.*)/)[1].split(", ").sort();
      assert.deepEqual(listed, sources);
      return true;
    });
  });

  test("send email-routing hands raw mail to the email handler: a fixture, or any .eml file", async () => {
    const fresh = await run(["send", "email-routing"], env);
    assert.match(fresh.stdout, /^200 taken/);
    const file = path.resolve(path.dirname(cli), "../fixtures/email-routing/alternative.eml");
    const byPath = await run(["send", "email-routing", file, "--to", "reports@mailhook.test"], env);
    assert.match(byPath.stdout, /^200 taken/);
    await waitFor(() => origin.deliveries.filter((d) => d.event.source === "/providers/email-routing").length === 2, { what: "2 messages delivered" });
    assert.ok(origin.deliveries.some((d) => d.event.data.recipient === "reports@mailhook.test"), "the envelope's RCPT TO is the recipient");
  });
});
