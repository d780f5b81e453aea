// `npm run mailhook -- connect mailtura` against a local stand-in of Mailtura's documented API and the local Worker,
// with wrangler's stand-in storing the secret (applied to the Worker as a deploy of the secret would); `disconnect`;
// and `connect NAME` for a provider without such an API: its steps, then the wait for its event.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { startMailtura } from "./fake-mailtura.mjs";
import { admHeaders, fixture, freePort, root, SECRETS, startMailhook, startOrigin } from "./harness.mjs";

let dir, hook, origin, mailtura;
const account = () => JSON.parse(readFileSync(path.join(dir, "account.json"), "utf8"));

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "mailhook-connect-"));
  writeFileSync(path.join(dir, "account.json"), JSON.stringify({ loggedIn: true, kv: [], d1: [], queues: [], r2: [], worker: { bindings: {}, secrets: {}, versions: 1 } }));
  origin = await startOrigin();
  hook = await startMailhook({
    listen: true,
    port: await freePort(),
    persist: path.join(dir, "state"),
    vars: { ORIGIN_URL: origin.url },
    secrets: { MAILTURA_WEBHOOK_SECRET: undefined },
  });
  mailtura = await startMailtura({
    key: "mt-api-key-1",
    tenant: "acme-corp",
    // What `wrangler secret put` stored reaches the Worker as a new version.
    async onTest() {
      const stored = account().worker.secrets.MAILTURA_WEBHOOK_SECRET;
      if (stored) await hook.setSecrets({ MAILTURA_WEBHOOK_SECRET: stored });
    },
  });
});
after(async () => {
  await hook.dispose();
  await origin.close();
  await mailtura.close();
  rmSync(dir, { recursive: true, force: true });
});

function cli(args, { input = "", env = {}, onOutput } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["scripts/mailhook.mjs", ...args], {
      cwd: root,
      env: {
        ...process.env,
        ADMIN_TOKEN: SECRETS.ADMIN_TOKEN,
        MAILHOOK_WRANGLER: path.join(root, "tests/integration/fake-wrangler.mjs"),
        FAKE_WRANGLER_STATE: path.join(dir, "account.json"),
        FAKE_WRANGLER_LOG: path.join(dir, "calls.jsonl"),
        ...env,
      },
    });
    let all = "";
    const take = (d) => {
      all += d;
      onOutput?.(all);
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("close", (code) => resolve({ code, all }));
    child.stdin.end(input);
  });
}

const api = () => ["--api", mailtura.url, "--key", "mt-api-key-1", "--tenant", "acme-corp", "--url", hook.url];

test("connect mailtura creates the webhook, stores its secret, and waits for the test event in the log", { timeout: 120_000 }, async () => {
  const r = await cli(["connect", "mailtura", ...api(), "--events", "delivered,email.bounced"]);
  assert.equal(r.code, 0, r.all);
  assert.equal(mailtura.webhooks.length, 1);
  const w = { ...mailtura.webhooks[0] };
  assert.equal(w.url, `${hook.url}/webhooks/mailtura`);
  assert.deepEqual(w.events, ["delivered", "bounced"]);
  assert.equal(w.enabled, true);
  assert.match(w.secret, /^[0-9a-f]{64}$/);
  assert.equal(account().worker.secrets.MAILTURA_WEBHOOK_SECRET, w.secret, "the same secret is stored with wrangler");
  assert.ok(!r.all.includes(w.secret), "the secret is never printed");
  const calls = readFileSync(path.join(dir, "calls.jsonl"), "utf8").trim().split("\n").map(JSON.parse);
  assert.ok(calls.every((c) => !c.args.join(" ").includes(w.secret)), "the secret is never in wrangler's arguments");
  assert.match(r.all, /connected: evt_[0-9a-f]+ \(email\.delivered\) is in the event log/);
  const logged = await hook.admin("/admin/events?provider=mailtura");
  assert.equal(logged.json.total, 1);

  // Again: a new webhook with a new secret replaces the first once its test event arrived; the API key never shown.
  const again = await cli(["connect", "mailtura", "--api", mailtura.url, "--tenant", "acme-corp", "--url", hook.url], { env: { MAILTURA_API_KEY: "mt-api-key-1" } });
  assert.equal(again.code, 0, again.all);
  assert.equal(mailtura.webhooks.length, 1);
  assert.notEqual(mailtura.webhooks[0].id, w.id);
  assert.notEqual(mailtura.webhooks[0].secret, w.secret);
  assert.equal(mailtura.webhooks[0].events.length, 7);
  assert.match(again.all, new RegExp(`deleted the older webhook ${w.id}`));
  assert.equal((await hook.admin("/admin/events?provider=mailtura")).json.total, 2, "the second test event, signed with the new secret, was waited for");
});

test("connect mailtura: a wrong key or no admin token is refused before anything changes", { timeout: 30_000 }, async () => {
  const before = mailtura.webhooks.map((w) => ({ ...w }));
  const wrongKey = await cli(["connect", "mailtura", "--api", mailtura.url, "--key", "nope", "--tenant", "acme-corp", "--url", hook.url]);
  assert.equal(wrongKey.code, 1);
  assert.match(wrongKey.all, /Mailtura refused GET \/api\/v1\/webhooks with 401: check --key/);
  const noToken = await cli(["connect", "mailtura", ...api()], { env: { ADMIN_TOKEN: "" } });
  assert.equal(noToken.code, 1);
  assert.match(noToken.all, /ADMIN_TOKEN is not set/);
  const noKey = await cli(["connect", "mailtura", "--api", mailtura.url, "--url", hook.url]);
  assert.match(noKey.all, /needs --api https:\/\/<your Mailtura instance> and its API key/);
  // Without --api: the steps by hand, then the wait (cut short here).
  const byHand = await cli(["connect", "mailtura", "--url", hook.url, "--wait", "1"]);
  assert.equal(byHand.code, 1);
  assert.match(byHand.all, new RegExp(`"url": "${hook.url}/webhooks/mailtura"`));
  assert.match(byHand.all, /no mailtura event arrived/);
  const badWait = await cli(["connect", "mailtura", ...api(), "--wait", "soon"]);
  assert.match(badWait.all, /--wait soon: give a number of seconds/);
  // A list in a shape connect does not know: nothing is created (a second webhook would double every event).
  mailtura.listShape = "items";
  try {
    const odd = await cli(["connect", "mailtura", ...api()]);
    assert.equal(odd.code, 1);
    assert.match(odd.all, /came in a shape this command does not know: nothing was changed/);
    const oddOff = await cli(["disconnect", "mailtura", ...api()]);
    assert.equal(oddOff.code, 1);
  } finally {
    mailtura.listShape = "data";
  }
  assert.deepEqual(mailtura.webhooks, before);
  assert.ok(account().worker.secrets.MAILTURA_WEBHOOK_SECRET, "the secret is kept while the webhook could not be found");
});

test("disconnect mailtura deletes the webhook and the secret", { timeout: 30_000 }, async () => {
  const r = await cli(["disconnect", "mailtura", ...api()]);
  assert.equal(r.code, 0, r.all);
  assert.deepEqual(mailtura.webhooks, []);
  assert.equal(account().worker.secrets.MAILTURA_WEBHOOK_SECRET, undefined);
  assert.match(r.all, /deleted Mailtura's webhook wh_/);
});

test("connect adm-tools prints the steps with mailhook's values, stores the pasted token, and waits for its event", { timeout: 60_000 }, async () => {
  let posted = false;
  const r = await cli(["connect", "adm-tools", "--url", hook.url, "--wait", "40"], {
    input: `${SECRETS.ADM_TOOLS_WEBHOOK_TOKEN}\n`,
    onOutput(all) {
      // The user sends the provider's test event once connect is waiting.
      if (!posted && all.includes("waiting for adm-tools")) {
        posted = true;
        hook.post("adm-tools", fixture("adm-tools", "new"), admHeaders());
      }
    },
  });
  assert.equal(r.code, 0, r.all);
  assert.match(r.all, new RegExp(`set the URL to ${hook.url}/webhooks/adm-tools`));
  assert.match(r.all, new RegExp(`${hook.url}/webhook-confirm\\.txt`));
  assert.match(r.all, /stored: wrangler secret put ADM_TOOLS_WEBHOOK_TOKEN/);
  assert.ok(!r.all.includes(SECRETS.ADM_TOOLS_WEBHOOK_TOKEN), "the pasted token is not echoed");
  assert.equal(account().worker.secrets.ADM_TOOLS_WEBHOOK_TOKEN, SECRETS.ADM_TOOLS_WEBHOOK_TOKEN);
  assert.match(r.all, /connected: evt_[0-9a-f]+ \(email\.received\)/);
});
