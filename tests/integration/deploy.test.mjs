// `npm run deploy` end to end against a recording stand-in for wrangler (fake-wrangler.mjs), whose `deploy` points at
// the local Worker for /healthz: a first deploy, an upgrade from 0.3.0's resources, a rerun that changes nothing, a
// failure half way and the rerun that finishes, and provider secrets never printed, logged or put in arguments.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { parse } from "smol-toml";
import { root, startMailhook } from "./harness.mjs";

const MIGRATIONS = readdirSync(path.join(root, "migrations")).filter((f) => f.endsWith(".sql")).sort();
const QUEUES = ["mailhook-events", "mailhook-dead-letters", "mailhook-events-slow"];
const PROVIDER_SECRETS = { MAILTURA_WEBHOOK_SECRET: "mt-7c1e9f0b2d-never-shown", ADM_TOOLS_WEBHOOK_TOKEN: "adm-4b8d2a6e1f-never-shown" };

let hook;
before(async () => {
  hook = await startMailhook({ listen: true, consumers: false });
});
after(() => hook.dispose());

/** A project folder: wrangler.toml as shipped but for ORIGIN_URL (and `edit`), migrations/, and an account. */
function project({ account = {}, edit = (t) => t } = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mailhook-deploy-"));
  const toml = readFileSync(path.join(root, "wrangler.toml"), "utf8").replace(/^ORIGIN_URL = .*$/m, 'ORIGIN_URL = "https://app.example/events"');
  writeFileSync(path.join(dir, "wrangler.toml"), edit(toml));
  symlinkSync(path.join(root, "migrations"), path.join(dir, "migrations"));
  const state = { loggedIn: true, kv: [], d1: [], queues: [], r2: [], worker: null, fail: [], ...account };
  writeFileSync(path.join(dir, "account.json"), JSON.stringify(state));
  return {
    dir,
    config: path.join(dir, "wrangler.toml"),
    account: () => JSON.parse(readFileSync(path.join(dir, "account.json"), "utf8")),
    setAccount: (s) => writeFileSync(path.join(dir, "account.json"), JSON.stringify(s)),
    calls: () => (existsSync(path.join(dir, "calls.jsonl")) ? readFileSync(path.join(dir, "calls.jsonl"), "utf8").trim().split("\n").filter(Boolean).map(JSON.parse) : []),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs `npm run deploy`'s script with the stand-in; `input`: what the user types, a line per question. */
function deploy(p, { args = [], input = "", env = {}, onOutput } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["scripts/deploy.mjs", "--config", p.config, ...args], {
      cwd: root,
      env: {
        ...process.env,
        MAILHOOK_WRANGLER: path.join(root, "tests/integration/fake-wrangler.mjs"),
        FAKE_WRANGLER_STATE: path.join(p.dir, "account.json"),
        FAKE_WRANGLER_LOG: path.join(p.dir, "calls.jsonl"),
        FAKE_WRANGLER_URL: hook.url,
        ...env,
      },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      onOutput?.(stdout, child);
    });
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code, stdout, stderr, all: stdout + stderr }));
    child.stdin.end(input);
  });
}

/** No provider secret anywhere it could be seen: the output, wrangler's arguments, a secrets file left behind. */
function assertNoSecretShown(p, ...runs) {
  for (const value of Object.values(PROVIDER_SECRETS)) {
    for (const r of runs) assert.ok(!r.all.includes(value), `a provider secret was printed:\n${r.all}`);
    for (const c of p.calls()) assert.ok(!JSON.stringify(c.args).includes(value), `a provider secret was in wrangler's arguments: ${c.args}`);
  }
  for (const c of p.calls()) {
    const i = c.args.indexOf("--secrets-file");
    if (i >= 0) assert.ok(!existsSync(c.args[i + 1]), "the secrets file was left behind");
  }
}

// The user's answers: Mailtura's secret, Maileroo's (skipped), adm.tools' token, the console (yes).
const ANSWERS = `${PROVIDER_SECRETS.MAILTURA_WEBHOOK_SECRET}\n\n${PROVIDER_SECRETS.ADM_TOOLS_WEBHOOK_TOKEN}\ny\n`;

test("deploy --dry-run prints the plan and calls nothing", async () => {
  const p = project();
  try {
    const r = await deploy(p, { args: ["--dry-run"] });
    assert.equal(r.code, 0, r.all);
    assert.match(r.stdout, /nothing is called/);
    for (const q of QUEUES) assert.match(r.stdout, new RegExp(`queue ${q}: create it if missing`));
    assert.match(r.stdout, /KV namespace DEDUPE: find "mailhook-dedupe" \(or "DEDUPE"\) or create it/);
    assert.match(r.stdout, new RegExp(`apply migrations/ \\(${MIGRATIONS.length} files\\)`));
    assert.match(r.stdout, /generate ORIGIN_SIGNING_SECRET/);
    assert.deepEqual(p.calls(), []);
  } finally {
    p.remove();
  }
});

test("deploy refuses a configuration that cannot work deployed, and a user not logged in, before changing anything", async () => {
  const local = project({ edit: (t) => t.replace(/^ORIGIN_URL = .*$/m, 'ORIGIN_URL = "http://127.0.0.1:8789/events"') });
  const out = project({ account: { loggedIn: false } });
  const two = project({ account: { accounts: [{ id: "a1", name: "Work" }, { id: "a2", name: "Home" }] } });
  try {
    const t = await deploy(two, { env: { CLOUDFLARE_ACCOUNT_ID: "" } });
    assert.equal(t.code, 1);
    assert.match(t.stdout, /this login has 2 accounts \(Work: a1, Home: a2\)\n  fix: choose one: CLOUDFLARE_ACCOUNT_ID=<id> npm run deploy/);
    assert.deepEqual(two.calls().map((c) => c.args[0]), ["whoami"]);
    const r = await deploy(local);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /ORIGIN_URL is http:\/\/127\.0\.0\.1:8789\/events, which Cloudflare cannot reach.*Set it to your application's public https URL/);
    assert.deepEqual(local.calls(), []);
    const o = await deploy(out);
    assert.equal(o.code, 1);
    assert.match(o.stdout, /wrangler is not logged in to Cloudflare\n  fix: run `npx wrangler login`/);
    assert.deepEqual(out.calls().map((c) => c.args[0]), ["whoami"]);
  } finally {
    local.remove();
    out.remove();
    two.remove();
  }
});

test("a first deploy creates everything, sets the secrets, and a rerun changes nothing", { timeout: 60_000 }, async () => {
  const p = project();
  try {
    const first = await deploy(p, { input: ANSWERS });
    assert.equal(first.code, 0, first.all);
    const a = p.account();
    assert.deepEqual([...a.queues].sort(), [...QUEUES].sort());
    assert.deepEqual(a.kv.map((n) => n.title), ["mailhook-dedupe"]);
    assert.deepEqual(a.d1.map((d) => [d.name, d.migrations]), [["mailhook", MIGRATIONS]]);
    assert.deepEqual(a.r2, ["mailhook-payloads"]);
    const toml = parse(readFileSync(p.config, "utf8"));
    assert.equal(toml.kv_namespaces[0].id, a.kv[0].id, "the KV id is written to wrangler.toml");
    assert.equal(toml.d1_databases[0].database_id, a.d1[0].uuid, "the D1 id is written to wrangler.toml");
    assert.deepEqual(a.worker.bindings, { DEDUPE: a.kv[0].id, DB: a.d1[0].uuid, PAYLOADS: "mailhook-payloads" });
    // Migrations went before the deploy that needs them.
    const order = p.calls().map((c) => c.args.slice(0, 3).join(" "));
    assert.ok(order.indexOf("d1 migrations apply") < order.indexOf(order.find((c) => c.startsWith("deploy"))), order.join("\n"));
    const s = a.worker.secrets;
    assert.deepEqual(Object.keys(s).sort(), ["ADMIN_TOKEN", "ADM_TOOLS_WEBHOOK_TOKEN", "MAILTURA_WEBHOOK_SECRET", "ORIGIN_SIGNING_SECRET"]);
    assert.equal(s.MAILTURA_WEBHOOK_SECRET, PROVIDER_SECRETS.MAILTURA_WEBHOOK_SECRET);
    assert.match(s.ORIGIN_SIGNING_SECRET, /^whsec_[A-Za-z0-9+/]{43}=$/);
    // The generated secrets are shown once, for the origin's side and the console; the providers' never.
    assert.equal(first.stdout.split(s.ORIGIN_SIGNING_SECRET).length, 2, "the signing secret is shown exactly once");
    assert.equal(first.stdout.split(s.ADMIN_TOKEN).length, 2);
    assertNoSecretShown(p, first);
    // /healthz of the deployed Worker, and each provider's webhook URL.
    assert.match(first.stdout, /GET \/healthz .*\n[\s\S]*\n   mailhook \d+\.\d+\.\d+ answers/);
    assert.match(first.stdout, new RegExp(`mailtura +${hook.url}/webhooks/mailtura`));
    assert.match(first.stdout, new RegExp(`adm-tools +${hook.url}/webhooks/adm-tools`));
    assert.deepEqual(JSON.parse(readFileSync(path.join(p.dir, ".wrangler/mailhook-deployed.json"), "utf8")), { url: hook.url });

    // The rerun: nothing created, nothing asked, no secret set or shown, wrangler.toml as it was.
    const before = { toml: readFileSync(p.config, "utf8"), account: p.account(), calls: p.calls().length };
    const again = await deploy(p);
    assert.equal(again.code, 0, again.all);
    const now = p.account();
    assert.equal(readFileSync(p.config, "utf8"), before.toml);
    assert.deepEqual({ ...now, worker: { ...now.worker, versions: 0 } }, { ...before.account, worker: { ...before.account.worker, versions: 0 } });
    const made = p.calls().slice(before.calls).filter((c) => c.args[1] === "create" || c.args[2] === "create" || c.args[0] === "secret" && c.args[1] === "put" || c.args.includes("--secrets-file"));
    assert.deepEqual(made, []);
    assert.doesNotMatch(again.all, /Generated and stored|ADMIN_TOKEN=|\[Y\/n\]|empty: skip; npm run mailhook/);
    assert.match(again.stdout, /secrets: .*\n   all set/);
    assert.match(again.stdout, /none to apply/);
  } finally {
    p.remove();
  }
});

test("an upgrade from 0.3.0's resources: the missing queue and migrations, the old KV namespace and secrets kept", { timeout: 60_000 }, async () => {
  const kvId = "3d0c1a0e7f9b4c2d8e6f5a4b3c2d1e0f";
  const dbId = "6f1d2c3b-4a59-4687-9a8b-7c6d5e4f3a21";
  const secrets = { ORIGIN_SIGNING_SECRET: "whsec_b2xkLW9yaWdpbi1rZXktZnJvbS0wLjMuMC1rZWVwLWl0IQ==", ADM_TOOLS_WEBHOOK_TOKEN: "old-adm-token" };
  const p = project({
    account: {
      // As 0.3.0's README made them: `wrangler kv namespace create DEDUPE`, two queues, `wrangler d1 create mailhook`.
      kv: [{ id: kvId, title: "DEDUPE" }, { id: "99999999999999999999999999999999", title: "something-else" }],
      d1: [{ uuid: dbId, name: "mailhook", migrations: ["0001_dead_letters.sql", "0002_event_log.sql", "0003_destinations.sql"] }],
      queues: ["mailhook-events", "mailhook-dead-letters"],
      r2: ["mailhook-payloads"],
      worker: { bindings: { DEDUPE: kvId, DB: dbId, PAYLOADS: "mailhook-payloads" }, secrets, versions: 7 },
    },
  });
  try {
    // Mailtura and Maileroo were never set up; the console is declined.
    const r = await deploy(p, { input: "\n\nn\n" });
    assert.equal(r.code, 0, r.all);
    const a = p.account();
    assert.deepEqual(a.queues, ["mailhook-events", "mailhook-dead-letters", "mailhook-events-slow"]);
    assert.equal(a.kv.length, 2, "no new KV namespace");
    assert.equal(a.d1.length, 1, "no new database");
    assert.deepEqual(a.d1[0].migrations, MIGRATIONS);
    assert.deepEqual(a.worker.bindings, { DEDUPE: kvId, DB: dbId, PAYLOADS: "mailhook-payloads" });
    assert.deepEqual(a.worker.secrets, secrets, "existing secrets kept, nothing new set");
    assert.match(r.stdout, /KV namespace DEDUPE: .*\n   the Worker's own, "DEDUPE", id 3d0c1a0e7f9b4c2d8e6f5a4b3c2d1e0f written/);
    assert.doesNotMatch(r.all, /ORIGIN_SIGNING_SECRET=|old-adm-token/);
    assert.match(r.stdout, /mailtura .*not configured \(MAILTURA_WEBHOOK_SECRET not set\)|mailtura +\S+ +configured/);
  } finally {
    p.remove();
  }
});

test("a failure half way leaves what is done, and the rerun finishes without making anything twice", { timeout: 90_000 }, async () => {
  const p = project({ account: { fail: ["d1 migrations apply", "deploy", "after-upload"] } });
  try {
    const first = await deploy(p, { input: ANSWERS });
    assert.equal(first.code, 1, first.all);
    assert.match(first.stdout, /apply migrations\/ .*\n   failed\nerror: applying the migrations to mailhook failed \(wrangler d1 migrations apply\):\n.*\n.*Service unavailable/);
    assert.match(first.stdout, /fix: fix what wrangler says, then run npm run deploy again/);
    assert.equal(p.account().worker, null, "nothing deployed before the migrations");

    // The deploy itself fails: the secrets asked for were not stored, and the generated ones not shown.
    const second = await deploy(p, { input: ANSWERS });
    assert.equal(second.code, 1, second.all);
    assert.match(second.stdout, /wrangler deploy, .*\n(   \|.*\n)*   failed/);
    assert.doesNotMatch(second.stdout, /Generated and stored/);

    // Wrangler fails after it uploaded the Worker with its secrets: the generated ones are shown, since they are stored.
    const third = await deploy(p, { input: ANSWERS });
    assert.equal(third.code, 1, third.all);
    assert.match(third.stdout, /Generated and stored \(the Worker was uploaded with them before wrangler failed\)/);
    assert.ok(third.stdout.includes(p.account().worker.secrets.ORIGIN_SIGNING_SECRET), "the stored signing secret is the one shown");

    const fourth = await deploy(p);
    assert.equal(fourth.code, 0, fourth.all);
    assert.match(fourth.stdout, /secrets: .*\n   all set/);
    assert.doesNotMatch(fourth.stdout, /Generated and stored/);
    const a = p.account();
    assert.equal(a.kv.length, 1);
    assert.equal(a.d1.length, 1);
    assert.deepEqual(a.d1[0].migrations, MIGRATIONS);
    assert.deepEqual([...a.queues].sort(), [...QUEUES].sort());
    assert.equal(a.worker.secrets.MAILTURA_WEBHOOK_SECRET, PROVIDER_SECRETS.MAILTURA_WEBHOOK_SECRET);
    assertNoSecretShown(p, first, second, third, fourth);
  } finally {
    p.remove();
  }
});

test("a deployed Worker keeps the KV namespace it is bound to; without one none is guessed or made; two candidates are named", { timeout: 30_000 }, async () => {
  const prod = { id: "1".repeat(32), title: "dedupe-prod" };
  const stray = { id: "3".repeat(32), title: "DEDUPE" }; // another project's, with the old README's name
  const secrets = { ORIGIN_SIGNING_SECRET: "whsec_a2VlcGtlZXBrZWVwa2VlcA==" };
  const db = { uuid: "6f1d2c3b-4a59-4687-9a8b-7c6d5e4f3a21", name: "mailhook", migrations: [] };
  const own = project({ account: { kv: [prod, stray], d1: [db], queues: QUEUES, worker: { bindings: { DEDUPE: prod.id, DB: db.uuid }, secrets, versions: 3 } } });
  const lost = project({ account: { kv: [prod], d1: [], queues: QUEUES, worker: { bindings: {}, secrets, versions: 3 } } });
  const two = project({ account: { kv: [{ id: "1".repeat(32), title: "mailhook-dedupe" }, { id: "2".repeat(32), title: "DEDUPE" }], queues: QUEUES } });
  try {
    const o = await deploy(own);
    assert.equal(o.code, 0, o.all);
    assert.match(o.stdout, /KV namespace DEDUPE: .*\n   the Worker's own, "dedupe-prod", id 1{32} written/);
    assert.equal(own.account().worker.bindings.DEDUPE, prod.id);
    const r = await deploy(lost);
    assert.equal(r.code, 1, r.all);
    assert.match(r.stdout, /the Worker mailhook is deployed, but no KV namespace named "mailhook-dedupe" or "DEDUPE" or "mailhook-DEDUPE" is in this account\n  fix: put the id of the KV namespace it uses in wrangler\.toml \(id = "…" under DEDUPE/);
    assert.equal(lost.account().kv.length, 1, "nothing created");
    const t = await deploy(two);
    assert.equal(t.code, 1, t.all);
    assert.match(t.stdout, /several KV namespaces could be mailhook's: "mailhook-dedupe" \(1{32}\), "DEDUPE" \(2{32}\)/);
    assert.equal(two.account().kv.length, 2);
    // The user writes the id: the next run takes it.
    writeFileSync(two.config, readFileSync(two.config, "utf8").replace('binding = "DEDUPE"', `binding = "DEDUPE"\nid = "${"2".repeat(32)}"`));
    const ok = await deploy(two, { input: "\n\n\nn\n" });
    assert.equal(ok.code, 0, ok.all);
    assert.equal(two.account().worker.bindings.DEDUPE, "2".repeat(32));
  } finally {
    own.remove();
    lost.remove();
    two.remove();
  }
});

test("secrets: one that is set is replaced only by --rotate (shown once), never by the environment; example values and bad keys are refused", { timeout: 60_000 }, async () => {
  const p = project();
  try {
    const first = await deploy(p, { input: "\n\n\ny\n" });
    assert.equal(first.code, 0, first.all);
    const before = p.account().worker.secrets;
    // An exported ADMIN_TOKEN (the local one, say) and signing secret leave the deployed ones alone.
    const env = await deploy(p, { env: { ADMIN_TOKEN: "local-admin-token", ORIGIN_SIGNING_SECRET: "whsec_bG9jYWw=" } });
    assert.equal(env.code, 0, env.all);
    assert.deepEqual(p.account().worker.secrets, before);
    // --rotate: a new signing secret, shown once and stored; the rest kept.
    const rot = await deploy(p, { args: ["--rotate", "ORIGIN_SIGNING_SECRET"] });
    assert.equal(rot.code, 0, rot.all);
    const after = p.account().worker.secrets;
    assert.notEqual(after.ORIGIN_SIGNING_SECRET, before.ORIGIN_SIGNING_SECRET);
    assert.equal(after.ADMIN_TOKEN, before.ADMIN_TOKEN);
    assert.equal(rot.stdout.split(after.ORIGIN_SIGNING_SECRET).length, 2);
    // The public example values, a short admin token, a signing secret that is no whsec_ key: refused, nothing deployed.
    const versions = p.account().worker.versions;
    for (const [args, env2, said] of [
      [["--rotate", "ADMIN_TOKEN"], { ADMIN_TOKEN: "local-admin-token" }, /ADMIN_TOKEN is the local example value from \.dev\.vars\.example/],
      [["--rotate", "ADMIN_TOKEN"], { ADMIN_TOKEN: "short" }, /ADMIN_TOKEN is shorter than 16 characters/],
      [["--rotate", "ORIGIN_SIGNING_SECRET"], { ORIGIN_SIGNING_SECRET: "hunter2" }, /ORIGIN_SIGNING_SECRET is not a whsec_<base64> key/],
      [["--rotate", "MAILTURA_WEBHOOK_SECRET"], { MAILTURA_WEBHOOK_SECRET: "local-mailtura-secret" }, /MAILTURA_WEBHOOK_SECRET is the local example value/],
      [["--rotate", "NOPE"], {}, /--rotate NOPE: not a secret this configuration needs/],
    ]) {
      const r = await deploy(p, { args, env: env2 });
      assert.equal(r.code, 1, r.all);
      assert.match(r.stdout, said);
    }
    assert.equal(p.account().worker.versions, versions);
  } finally {
    p.remove();
  }
});

test("destinations the Worker would refuse stop the deploy first; a /healthz that is not mailhook's is named", { timeout: 30_000 }, async () => {
  const twice = project({
    edit: (t) => `${t}\n[[vars.DESTINATIONS]]\nname = "crm"\nurl = "https://crm.example/a"\n\n[[vars.DESTINATIONS]]\nname = "CRM "\nurl = "https://crm.example/b"\n`,
  });
  const other = project();
  const html = http.createServer((req, res) => res.writeHead(200, { "content-type": "text/html" }).end("<h1>It works</h1>"));
  await new Promise((r) => html.listen(0, "127.0.0.1", r));
  try {
    const r = await deploy(twice);
    assert.equal(r.code, 1, r.all);
    assert.match(r.stdout, /destination "crm": the name is used twice/);
    assert.deepEqual(twice.calls(), []);
    const h = await deploy(other, { env: { FAKE_WRANGLER_URL: `http://127.0.0.1:${html.address().port}` } });
    assert.equal(h.code, 1, h.all);
    assert.match(h.stdout, /\/healthz did not answer as mailhook does \(200, not mailhook's JSON\)\n  fix: if a route or proxy is in front of it, pass --url/);
  } finally {
    html.close();
    twice.remove();
    other.remove();
  }
});

test("Ctrl-C while wrangler deploys removes the secrets file", { timeout: 30_000 }, async () => {
  const p = project({ account: { slowDeploy: 3000 } });
  try {
    const r = await deploy(p, {
      input: ANSWERS,
      onOutput(out, child) {
        if (out.includes("9. wrangler deploy") && !child.interrupted) {
          child.interrupted = true;
          setTimeout(() => child.kill("SIGINT"), 500);
        }
      },
    });
    assert.equal(r.code, 130, r.all);
    assert.match(r.stdout, /stopped \(SIGINT\): what is done stays done/);
    const call = p.calls().find((c) => c.args[0] === "deploy");
    assert.ok(call, "wrangler deploy was running");
    assert.ok(!existsSync(call.args[call.args.indexOf("--secrets-file") + 1]), "the secrets file is gone");
  } finally {
    p.remove();
  }
});

test("an oddly spelled but valid wrangler.toml (CRLF, quoted keys, a commented header, spaces) gets its ids in place", { timeout: 30_000 }, async () => {
  const p = project({
    edit: (t) =>
      t
        .replace("[[kv_namespaces]]\nbinding = \"DEDUPE\"", "[[ kv_namespaces ]]   # dedupe keys\n\"binding\" = 'DEDUPE'")
        .replace("[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"mailhook\"", "[[d1_databases]]\nbinding = \"DB\"\ndatabase_name   =   'mailhook'  # the log")
        .replace(/^ORIGIN_URL = .*$/m, 'ORIGIN_URL = "  https://app.example/events  "')
        .replaceAll("\n", "\r\n"),
  });
  try {
    const r = await deploy(p, { input: "\n\n\nn\n" });
    assert.equal(r.code, 0, r.all);
    const text = readFileSync(p.config, "utf8");
    assert.doesNotMatch(text.replaceAll("\r\n", ""), /\n/, "line endings stay CRLF");
    const toml = parse(text);
    const a = p.account();
    assert.equal(toml.kv_namespaces[0].id, a.kv[0].id);
    assert.equal(toml.d1_databases[0].database_id, a.d1[0].uuid);
    assert.deepEqual(a.worker.bindings, { DEDUPE: a.kv[0].id, DB: a.d1[0].uuid, PAYLOADS: "mailhook-payloads" });
    assert.ok(a.worker.secrets.ORIGIN_SIGNING_SECRET, "the origin, its URL written with spaces, gets its signing secret");
  } finally {
    p.remove();
  }
});
