// `npm run deploy`: the first deploy and every upgrade, the same command. Installs what is missing, checks the
// Cloudflare login, creates what is missing (queues; the KV namespace and the D1 database, their ids written to
// wrangler.toml; the R2 bucket through wrangler's automatic provisioning), applies the D1 migrations remotely,
// sets the secrets the configuration needs, deploys, and checks /healthz. Each step first looks at what exists,
// so a run that stopped half way is finished by the next one.
//
//   npm run deploy [-- --dry-run] [--ask] [--config FILE] [--url URL]
//
// --dry-run prints the plan and calls nothing. --ask: ask again for the providers' secrets not set, and offer the
// console, as a first deploy does. --url: the deployed Worker's address when wrangler prints none
// (a custom domain). Secrets can come from the environment under their own names (MAILTURA_WEBHOOK_SECRET=…).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
process.env.WRANGLER_SEND_METRICS = "false";

let values;
try {
  ({ values } = parseArgs({ options: { "dry-run": { type: "boolean" }, ask: { type: "boolean" }, config: { type: "string" }, url: { type: "string" } } }));
} catch (e) {
  console.error(`deploy: ${e.message}\nusage: npm run deploy [-- --dry-run] [--ask] [--config FILE] [--url URL]`);
  process.exit(2);
}
const dryRun = values["dry-run"] ?? false;

const setup = spawnSync("bash", [path.join(root, "scripts/setup.sh")], { stdio: ["ignore", "inherit", "inherit"] });
if (setup.status !== 0) process.exit(setup.status ?? 1);

const { readConfig, requiredSecrets, setInBlock } = await import("./cloudflare/config.mjs");
const { PROVIDERS } = await import("./cloudflare/providers.mjs");
const { wrangler, jsonOf, said, loggedIn, secretNames } = await import("./cloudflare/wrangler.mjs");
const { ask, done } = await import("./cloudflare/ask.mjs");

const configPath = path.resolve(values.config ?? path.join(root, "wrangler.toml"));
const configArg = values.config ? configPath : undefined;
let config = readConfig(readFileSync(configPath, "utf8"));

/** A step that could not be done: what went wrong, and what to do. */
class Stop extends Error {
  constructor(message, fix) {
    super(message);
    this.fix = fix;
  }
}

/** Runs wrangler; a failure stops the deploy with wrangler's own words. */
async function must(args, what, opts = {}) {
  const r = await wrangler(args, { config: configArg, ...opts });
  if (r.code !== 0) throw new Stop(`${what} failed (wrangler ${args.slice(0, 3).join(" ")}):\n    ${said(r)}`, "fix what wrangler says, then run npm run deploy again");
  return r;
}

/** Writes an id into wrangler.toml at once, so that a later failure keeps it. */
function writeId(table, match, matchValue, key, id) {
  const text = setInBlock(readFileSync(configPath, "utf8"), table, match, matchValue, key, id);
  writeFileSync(configPath, text);
  config = readConfig(text);
}

const migrations = (d) => readdirSync(path.join(path.dirname(configPath), d.migrationsDir)).filter((f) => f.endsWith(".sql"));
const secrets = requiredSecrets(config);
const toSet = {}; // name → value, uploaded with the deploy (--secrets-file)
const shown = []; // generated secrets printed once, after the deploy stored them
let deployedUrl = values.url;

const kvTitle = (binding) => `${config.name}-${binding.toLowerCase().replaceAll("_", "-")}`;

/** The plan: each step's line (what --dry-run prints) and what it does. */
const steps = [
  {
    plan: "check that wrangler is logged in to Cloudflare (wrangler whoami)",
    async run() {
      if (!(await loggedIn(configArg))) {
        throw new Stop("wrangler is not logged in to Cloudflare", "run `npx wrangler login` (or set CLOUDFLARE_API_TOKEN to a token that can edit Workers, KV, D1, R2 and Queues), then npm run deploy again");
      }
      return "logged in";
    },
  },
  ...config.queues.map((q) => ({
    plan: `queue ${q}: create it if missing`,
    async run() {
      if ((await wrangler(["queues", "info", q], { config: configArg })).code === 0) return "exists";
      const r = await wrangler(["queues", "create", q], { config: configArg });
      if (r.code === 0) return "created";
      if (/already (exists|taken)/i.test(said(r))) return "exists";
      throw new Stop(`creating queue ${q} failed:\n    ${said(r)}`, "fix what wrangler says (Queues needs the Workers Paid plan), then run npm run deploy again");
    },
  })),
  ...config.kv.map((k) => ({
    plan: `KV namespace ${k.binding}: ${k.id ? `the id in ${path.basename(configPath)}` : `find "${kvTitle(k.binding)}" or create it`}, its id written to ${path.basename(configPath)}`,
    async run() {
      const list = async () => jsonOf((await must(["kv", "namespace", "list"], "listing KV namespaces")).stdout) ?? [];
      const all = await list();
      if (k.id) {
        if (all.some((n) => n.id === k.id)) return `${k.id} exists`;
        throw new Stop(`KV namespace ${k.id} (${k.binding} in ${configPath}) is not in this account`, `remove its id line (deploy then finds or creates "${kvTitle(k.binding)}"), or log in to the account that has it`);
      }
      // The name wrangler's automatic provisioning gives it, then those of the old README's `kv namespace create DEDUPE`.
      const titles = [kvTitle(k.binding), k.binding, `${config.name}-${k.binding}`];
      let found = titles.map((t) => all.find((n) => n.title === t)).find(Boolean);
      let outcome = `found "${found?.title}"`;
      if (!found) {
        await must(["kv", "namespace", "create", titles[0]], `creating KV namespace ${titles[0]}`);
        found = (await list()).find((n) => n.title === titles[0]);
        if (!found) throw new Stop(`KV namespace ${titles[0]} was created but is not listed`, "run npm run deploy again");
        outcome = `created "${titles[0]}"`;
      }
      writeId("kv_namespaces", "binding", k.binding, "id", found.id);
      return `${outcome}, id ${found.id} written`;
    },
  })),
  ...config.d1.map((d) => ({
    plan: `D1 database ${d.name}: ${d.id ? `the id in ${path.basename(configPath)}` : "find it or create it"}, its id written to ${path.basename(configPath)}`,
    async run() {
      const list = async () => jsonOf((await must(["d1", "list", "--json"], "listing D1 databases")).stdout) ?? [];
      const all = await list();
      if (d.id) {
        if (all.some((db) => db.uuid === d.id)) return `${d.id} exists`;
        throw new Stop(`D1 database ${d.id} (${d.name} in ${configPath}) is not in this account`, "remove its database_id line (deploy then finds or creates it by name), or log in to the account that has it");
      }
      let found = all.find((db) => db.name === d.name);
      let outcome = "found";
      if (!found) {
        await must(["d1", "create", d.name], `creating D1 database ${d.name}`);
        found = (await list()).find((db) => db.name === d.name);
        if (!found) throw new Stop(`D1 database ${d.name} was created but is not listed`, "run npm run deploy again");
        outcome = "created";
      }
      writeId("d1_databases", "database_name", d.name, "database_id", found.uuid);
      return `${outcome}, id ${found.uuid} written`;
    },
  })),
  ...config.d1.map((d) => ({
    plan: `apply ${d.migrationsDir}/ (${migrations(d).length} files) to D1 ${d.name} remotely, before the code that needs them`,
    async run() {
      const r = await must(["d1", "migrations", "apply", d.name, "--remote"], `applying the migrations to ${d.name}`);
      return /No migrations to apply/i.test(r.stdout) ? "none to apply" : "applied";
    },
  })),
  {
    plan:
      `secrets: generate ${secrets.generated.map((s) => s.name).join(", ")} if not set (signing secrets shown once); ` +
      `on a first deploy (or with --ask), ask for ${secrets.asked.map((s) => s.secret).join(", ")} (empty: skip) and offer ADMIN_TOKEN (the console)`,
    run: chooseSecrets,
  },
  {
    plan: `wrangler deploy, with the new secrets (it builds first: minutes the first time; R2 bucket ${config.r2.join(", ")} created if missing)`,
    run: deploy,
  },
  {
    plan: "GET /healthz of the deployed Worker, then print each provider's webhook URL and what is left to do",
    run: health,
  },
];

async function chooseSecrets() {
  const set = await secretNames(configArg);
  const missing = (name) => !set?.has(name);
  // Providers and the console are asked about on the first deploy (or with --ask); an upgrade asks nothing.
  const asking = !set || values.ask;
  for (const s of secrets.generated.filter((g) => missing(g.name))) {
    toSet[s.name] = process.env[s.name] ?? (s.kind === "signing" ? `whsec_${randomBytes(32).toString("base64")}` : randomBytes(32).toString("base64url"));
    if (s.show && !process.env[s.name]) shown.push({ name: s.name, value: toSet[s.name], why: `destination "${s.destination}" verifies mailhook's signatures with it (Standard Webhooks)` });
  }
  for (const p of secrets.asked.filter((a) => missing(a.secret) && (asking || process.env[a.secret]))) {
    const value = process.env[p.secret] ?? (await ask(`${p.name}: ${p.secret}, ${p.hint}; empty to skip:`, { hidden: true }));
    if (value) toSet[p.secret] = value;
  }
  if (missing(secrets.console) && (asking || process.env[secrets.console])) {
    const given = process.env[secrets.console];
    const answer = given ? "y" : await ask("Turn on the console and the admin API (a generated ADMIN_TOKEN)? [Y/n]");
    if (answer !== null && !/^n/i.test(answer)) {
      toSet.ADMIN_TOKEN = given ?? randomBytes(24).toString("base64url");
      if (!given) shown.push({ name: "ADMIN_TOKEN", value: toSet.ADMIN_TOKEN, why: "sign in to the console (/console) and call the admin API with it" });
    }
  }
  done();
  const names = Object.keys(toSet);
  return names.length ? `to set with the deploy: ${names.join(", ")}` : "all set";
}

async function deploy() {
  const args = ["deploy"];
  let dir;
  try {
    if (Object.keys(toSet).length) {
      // Uploaded with the deploy itself, from a file only this user can read, removed at once.
      dir = mkdtempSync(path.join(os.tmpdir(), "mailhook-secrets-"));
      writeFileSync(path.join(dir, "secrets.json"), JSON.stringify(toSet), { mode: 0o600 });
      args.push("--secrets-file", path.join(dir, "secrets.json"));
    }
    const r = await must(args, "wrangler deploy");
    deployedUrl ??= r.stdout.match(/^\s+(https?:\/\/\S+)\s*$/m)?.[1] ?? (config.vars.PUBLIC_URL || undefined);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
  if (shown.length) {
    console.log("\nGenerated and stored; shown this once, copy them now:");
    for (const s of shown) console.log(`  ${s.name}=${s.value}\n    ${s.why}`);
    console.log("");
  }
  if (deployedUrl) {
    deployedUrl = deployedUrl.replace(/\/+$/, "");
    mkdirSync(path.join(path.dirname(configPath), ".wrangler"), { recursive: true });
    writeFileSync(path.join(path.dirname(configPath), ".wrangler", "mailhook-deployed.json"), JSON.stringify({ url: deployedUrl }) + "\n");
  }
  return deployedUrl ? `deployed at ${deployedUrl}` : "deployed";
}

async function health() {
  if (!deployedUrl) throw new Stop("wrangler printed no workers.dev address", "run npm run deploy -- --url https://<your route> to check a custom domain (or set PUBLIC_URL)");
  let last;
  for (let i = 0; i < 15; i++) {
    try {
      const res = await fetch(`${deployedUrl}/healthz`, { signal: AbortSignal.timeout(10_000) });
      last = { status: res.status, json: await res.json().catch(() => null) };
      if (res.status === 200 || res.status === 503) break;
    } catch (e) {
      last = { error: e.cause?.code ?? e.message };
    }
    await new Promise((r) => setTimeout(r, 2000)); // a new workers.dev address takes a moment to answer
  }
  if (last.status === 503) throw new Stop(`the deployed Worker answers /healthz with 503: ${last.json?.error}`, "set what it names (wrangler.toml [vars], then npm run deploy again; or `npx wrangler secret put NAME`)");
  if (last.status !== 200) throw new Stop(`${deployedUrl}/healthz did not answer 200 (${last.error ?? last.status})`, `check it again in a minute with npm run mailhook -- doctor --url ${deployedUrl}`);
  report(last.json);
  return `mailhook ${last.json.version} answers`;
}

/** What is left to do: each provider's URL and state, destinations' problems, warnings. */
function report(h) {
  console.log(`\nmailhook is deployed at ${deployedUrl}\n\nProviders (each: npm run mailhook -- connect NAME prints what to paste where, and waits for its test event):`);
  for (const p of PROVIDERS) {
    const state = h.providers?.[p.name]?.configured;
    const where = p.route === false ? "Email Routing rule: Send to a Worker, mailhook" : `${deployedUrl}/webhooks/${p.name}`;
    console.log(`  ${p.name.padEnd(14)} ${where}  ${state === false ? `not configured${p.secret ? ` (${p.secret} not set)` : ""}` : "configured"}`);
  }
  for (const [name, d] of Object.entries(h.destinations ?? {})) if (!d.configured) console.log(`destination ${name}: ${d.problem}`);
  for (const w of h.warnings ?? []) console.log(`warning: ${w}`);
  if (!config.vars.PUBLIC_URL) console.log(`PUBLIC_URL is empty: set it to ${deployedUrl} in wrangler.toml [vars] for links in alerts and attachments by link, then npm run deploy`);
}

console.log(dryRun ? "npm run deploy --dry-run: the plan (nothing is called, nothing is changed)" : `deploying ${config.name} with ${path.relative(root, configPath) || configPath}`);
for (const p of config.problems) console.log(`error: ${p}`);
if (config.problems.length) process.exit(1);
for (const [i, s] of steps.entries()) {
  if (dryRun) {
    console.log(`  ${i + 1}. ${s.plan}`);
    continue;
  }
  console.log(`${i + 1}. ${s.plan}`);
  try {
    console.log(`   ${await s.run()}`);
  } catch (e) {
    done();
    console.log(`   failed\nerror: ${e.message}\n  fix: ${e.fix ?? "see above, then run npm run deploy again"}`);
    console.log("Everything before this step is done and stays done; npm run deploy takes up from here.");
    process.exit(1);
  }
}
