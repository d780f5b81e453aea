// `npm run mailhook -- doctor` against the local Worker: healthy, then with one broken setting it must name.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { root, SECRETS, startMailhook } from "./harness.mjs";

const run = promisify(execFile);

async function doctor(hook) {
  const env = { ...process.env, ADMIN_TOKEN: SECRETS.ADMIN_TOKEN };
  try {
    const { stdout } = await run("node", ["scripts/mailhook.mjs", "doctor", "--url", hook.url], { cwd: root, env });
    return { code: 0, out: stdout };
  } catch (e) {
    return { code: e.code, out: e.stdout };
  }
}

test("doctor: a retention cron that stopped and a migration not applied are named with their fixes, and a broken configuration with its own", { timeout: 60_000 }, async () => {
  const hook = await startMailhook({ listen: true, consumers: false, vars: { ALERT_URL: "https://alerts.example/hook" } });
  try {
    const healthy = await doctor(hook);
    assert.equal(healthy.code, 0, healthy.out);
    assert.match(healthy.out, /\/healthz answers 200/);
    assert.doesNotMatch(healthy.out, /^error:/m);
    assert.match(healthy.out, /^warning: the retention cron has not run yet/m);
    // The daily cron records its run; the doctor then says nothing of it, until the record is three days old.
    await hook.scheduled();
    assert.doesNotMatch((await doctor(hook)).out, /retention cron/);
    const old = Math.floor(Date.now() / 1000) - 3 * 86_400;
    await (await hook.kv()).put("retention:last-run", JSON.stringify({ at: old, error: null }));
    const late = await doctor(hook);
    assert.equal(late.code, 1, late.out);
    assert.match(late.out, /^error: the retention cron last ran at \S+, 3\.0 days ago: the event log and R2 grow without bound\n  fix: check that wrangler\.toml \[triggers\] crons has "17 3 \* \* \*"/m);
    // A run that started two hours ago and never finished (a CPU limit, say).
    await (await hook.kv()).put("retention:last-start", String(Math.floor(Date.now() / 1000) - 7200));
    const cut = await doctor(hook);
    assert.equal(cut.code, 1, cut.out);
    assert.match(cut.out, /^error: the retention cron started at \S+ and did not finish/m);
    await hook.scheduled();
    assert.doesNotMatch((await doctor(hook)).out, /retention cron/);
    // Broken: the newest migration recorded as not applied (a deploy before `d1 migrations apply`).
    await (await hook.db()).prepare("DELETE FROM d1_migrations WHERE name = '0009_two_rows.sql'").run();
    const broken = await doctor(hook);
    assert.equal(broken.code, 1, broken.out);
    assert.match(broken.out, /^error: migration 0009_two_rows\.sql is not applied\n  fix: run `npm run deploy`, which applies them before it deploys \(or `npx wrangler d1 migrations apply mailhook --remote`/m);
  } finally {
    await hook.dispose();
  }
  const misconfigured = await startMailhook({ listen: true, consumers: false, vars: { ORIGIN_URL: undefined, DESTINATIONS: [{ name: "crm", url: "https://crm.example/hook" }] } });
  try {
    const r = await doctor(misconfigured);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /^error: \/healthz answers 503: .*DESTINATION_CRM_SIGNING_SECRET is not set/m);
  } finally {
    await misconfigured.dispose();
  }
});
