// `npm run deploy`: the first deploy and every upgrade, the same command. Installs what is missing, checks the
// Cloudflare login, creates what is missing (queues; the KV namespace and the D1 database, their ids written to
// wrangler.toml; the R2 bucket through wrangler's automatic provisioning), applies the D1 migrations remotely,
// sets the secrets the configuration needs, deploys, and checks /healthz. Each step first looks at what exists,
// so a run that stopped half way is finished by the next one.
//
//   npm run deploy [-- --dry-run] [--ask] [--rotate NAME,…] [--config FILE] [--url URL]
//
// --dry-run prints the plan and calls nothing. --ask: ask again for the providers' secrets not set, and offer the
// console, as a first deploy does. --rotate: replace those secrets although they are set (a generated one is
// generated anew and shown once). --url: the deployed Worker's address when wrangler prints none (a custom
// domain). A secret that is not set can come from the environment under its own name (MAILTURA_WEBHOOK_SECRET=…).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
process.env.WRANGLER_SEND_METRICS = "false";

let values;
try {
  ({ values } = parseArgs({
    options: { "dry-run": { type: "boolean" }, ask: { type: "boolean" }, rotate: { type: "string" }, config: { type: "string" }, url: { type: "string" } },
  }));
} catch (e) {
  console.error(`deploy: ${e.message}\nusage: npm run deploy [-- --dry-run] [--ask] [--rotate NAME,…] [--config FILE] [--url URL]`);
  process.exit(2);
}
const dryRun = values["dry-run"] ?? false;

// Installs what is missing (a dry run only when it cannot read wrangler.toml without it).
if (!dryRun || !existsSync(path.join(root, "node_modules/smol-toml"))) {
  const setup = spawnSync("bash", [path.join(root, "scripts/setup.sh")], { stdio: ["ignore", "inherit", "inherit"] });
  if (setup.status !== 0) process.exit(setup.status ?? 1);
}

const { readConfig, requiredSecrets, setInBlock } = await import("./cloudflare/config.mjs");
const { PROVIDERS } = await import("./cloudflare/providers.mjs");
const { account, kvTitle, Stop } = await import("./cloudflare/resources.mjs");
const { wrangler, said, secretNames } = await import("./cloudflare/wrangler.mjs");
const { ask, done } = await import("./cloudflare/ask.mjs");
const { readDevVars } = await import("./demo-origin.mjs");
const { signingSecret } = await import("./gen-secret.mjs");

const configPath = path.resolve(values.config ?? path.join(root, "wrangler.toml"));
const configArg = values.config ? configPath : undefined;
if (!existsSync(configPath)) {
  console.error(`deploy: ${configPath} does not exist\n  fix: run npm run deploy from mailhook's folder, or give --config the path of a wrangler.toml`);
  process.exit(1);
}
let config;
try {
  config = readConfig(readFileSync(configPath, "utf8"));
} catch (e) {
  console.error(`deploy: ${configPath} cannot be read: ${e.message}\n  fix: correct it (it is TOML), then run npm run deploy again`);
  process.exit(1);
}
const migrationsOf = (d) => path.join(path.dirname(configPath), d.migrationsDir);
for (const d of config.d1) {
  if (!existsSync(migrationsOf(d))) config.problems.push(`${migrationsOf(d)} (migrations_dir of ${d.name}) does not exist: deploy from the project's folder, or give --config a wrangler.toml beside migrations/`);
}

/** Writes an id into wrangler.toml at once, so that a later failure keeps it. */
function writeId(table, match, matchValue, key, id) {
  const text = setInBlock(readFileSync(configPath, "utf8"), table, match, matchValue, key, id);
  writeFileSync(configPath, text);
  config = { ...readConfig(text), problems: config.problems };
}

let secretsSet; // the names of the Worker's secrets (null: no Worker yet), read once
const workerSecrets = async () => (secretsSet === undefined ? (secretsSet = await secretNames(configArg)) : secretsSet);
const cloud = account({
  config: configArg,
  file: path.basename(configPath),
  name: config.name,
  accountId: config.accountId,
  writeId,
  workerExists: async () => (await workerSecrets()) !== null,
});

const migrations = (d) => (existsSync(migrationsOf(d)) ? readdirSync(migrationsOf(d)).filter((f) => f.endsWith(".sql")) : []);
const secrets = requiredSecrets(config);
const rotate = new Set((values.rotate ?? "").split(",").map((n) => n.trim()).filter(Boolean));
const known = [...secrets.generated.map((s) => s.name), ...secrets.asked.map((s) => s.secret), secrets.console];
for (const n of rotate) if (!known.includes(n)) config.problems.push(`--rotate ${n}: not a secret this configuration needs (${known.join(", ")})`);
// The local example values (.dev.vars.example) are public: never deployed.
const exampleFile = path.join(root, ".dev.vars.example");
const examples = new Set(existsSync(exampleFile) ? Object.values(readDevVars(exampleFile)).filter(Boolean) : []);
const toSet = {}; // name → value, uploaded with the deploy (--secrets-file)
const shown = []; // generated secrets printed once, when the deploy stored them
let deployedUrl = values.url;
let secretsDir; // the secrets file's folder while it exists: removed however the deploy ends
const removeSecrets = () => secretsDir && rmSync(secretsDir, { recursive: true, force: true });
const running = { child: null, output: "" }; // wrangler deploy while it runs
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    removeSecrets();
    running.child?.kill(signal);
    // Once wrangler said "Uploaded", the secrets are stored: shown now, or never.
    if (/^\s*Uploaded /m.test(running.output)) showSecrets(" (the Worker was uploaded with them before the deploy was stopped)");
    else if (running.child && shown.length) console.log(`\nif the upload finished anyway, the generated secrets are stored unseen: replace them with npm run deploy -- --rotate ${shown.map((x) => x.name).join(",")}`);
    console.log(`\nstopped (${signal}): what is done stays done; npm run deploy takes up from here`);
    process.exit(130);
  });
}

/** The plan: each step's line (what --dry-run prints) and what it does. */
const steps = [
  { plan: "check that wrangler is logged in to Cloudflare (wrangler whoami)", run: cloud.login },
  ...config.queues.map((q) => ({ plan: `queue ${q}: create it if missing`, run: () => cloud.queue(q) })),
  ...config.kv.map((k) => ({
    plan: `KV namespace ${k.binding}: ${k.id ? `the id in ${path.basename(configPath)}` : `find "${kvTitle(config.name, k.binding)}" (or "${k.binding}") or create it, its id written to ${path.basename(configPath)}`}`,
    run: () => cloud.kv(k),
  })),
  ...config.d1.map((d) => ({
    plan: `D1 database ${d.name}: ${d.id ? `the id in ${path.basename(configPath)}` : `find it or create it, its id written to ${path.basename(configPath)}`}`,
    run: () => cloud.d1(d),
  })),
  ...config.d1.map((d) => ({
    plan: `apply ${d.migrationsDir}/ (${migrations(d).length} files) to D1 ${d.name} remotely, before the code that needs them`,
    run: () => cloud.migrate(d),
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

/** A secret given in the environment under its own name (blank: none). */
const fromEnv = (name) => process.env[name]?.trim() || undefined;

/** A value to deploy: never one of the public local examples, and an admin token long enough to guess at. */
function checked(name, value) {
  if (examples.has(value)) throw new Stop(`${name} is the local example value from .dev.vars.example, which anyone can read`, `give ${name} its real value, then run npm run deploy again`);
  if (name === secrets.console && value.length < 16) throw new Stop(`${name} is shorter than 16 characters`, "use a long random value (npm run gen-secret), or let deploy generate one");
  if (name.endsWith("_SIGNING_SECRET") && !/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(value)) throw new Stop(`${name} is not a whsec_<base64> key`, "make one with npm run gen-secret, or let deploy generate it");
  return value;
}

async function chooseSecrets() {
  const set = await workerSecrets();
  // Not set yet, or named by --rotate. One that is set is never replaced otherwise, whatever the environment holds.
  const missing = (name) => !set?.has(name) || rotate.has(name);
  // Providers and the console are asked about on the first deploy (or with --ask); an upgrade asks nothing.
  const asking = !set || values.ask;
  for (const s of secrets.generated.filter((g) => missing(g.name))) {
    toSet[s.name] = (fromEnv(s.name) && checked(s.name, fromEnv(s.name))) ?? (s.kind === "signing" ? signingSecret() : randomBytes(32).toString("base64url"));
    if (s.show && !fromEnv(s.name)) shown.push({ name: s.name, value: toSet[s.name], why: `destination "${s.destination}" verifies mailhook's signatures with it (Standard Webhooks)` });
  }
  for (const p of secrets.asked.filter((a) => missing(a.secret) && (asking || rotate.has(a.secret) || fromEnv(a.secret)))) {
    const value = fromEnv(p.secret) ?? (await ask(`${p.name}: ${p.secret}, ${p.hint} (empty: skip; npm run mailhook -- connect ${p.name} later):`, { hidden: true }));
    if (value) toSet[p.secret] = checked(p.secret, value);
  }
  if (missing(secrets.console) && (asking || rotate.has(secrets.console) || fromEnv(secrets.console))) {
    const given = fromEnv(secrets.console) && checked(secrets.console, fromEnv(secrets.console));
    const answer = given || rotate.has(secrets.console) ? "y" : await ask("Turn on the console and the admin API (a generated ADMIN_TOKEN)? [Y/n]");
    if (answer !== null && !/^n/i.test(answer)) {
      toSet.ADMIN_TOKEN = given ?? randomBytes(24).toString("base64url");
      if (!given) shown.push({ name: "ADMIN_TOKEN", value: toSet.ADMIN_TOKEN, why: "sign in to the console (/console) and call the admin API with it" });
    }
  }
  done();
  const names = Object.keys(toSet);
  return names.length ? `to set with the deploy: ${names.join(", ")}` : "all set";
}

/** Prints the generated secrets, once: after the deploy stored them. */
function showSecrets(note = "") {
  if (!shown.length) return;
  console.log(`\nGenerated and stored${note}; shown this once, copy them now:`);
  for (const s of shown) console.log(`  ${s.name}=${s.value}\n    ${s.why}`);
  console.log("");
  shown.length = 0;
}

async function deploy() {
  const args = ["deploy"];
  let r;
  try {
    if (Object.keys(toSet).length) {
      // Uploaded with the deploy itself, from a file only this user can read, removed at once.
      secretsDir = mkdtempSync(path.join(os.tmpdir(), "mailhook-secrets-"));
      writeFileSync(path.join(secretsDir, "secrets.json"), JSON.stringify(toSet), { mode: 0o600 });
      args.push("--secrets-file", path.join(secretsDir, "secrets.json"));
    }
    // What wrangler prints while it builds and uploads (minutes the first time) is shown as it comes.
    running.output = "";
    const echo = (line) => {
      running.output += `${line}\n`;
      console.log(`   | ${line}`);
    };
    r = await wrangler(args, { config: configArg, echo, onChild: (c) => (running.child = c) });
  } finally {
    removeSecrets();
    secretsDir = undefined;
    running.child = null;
  }
  if (r.code !== 0) {
    // The Worker and its secrets are uploaded before the triggers are set: a failure after that has stored them.
    if (/^\s*Uploaded /m.test(r.stdout)) showSecrets(" (the Worker was uploaded with them before wrangler failed)");
    throw new Stop(`wrangler deploy failed:\n    ${said(r)}`, "fix what wrangler says, then run npm run deploy again");
  }
  // The addresses wrangler lists under "Deployed <name> triggers", one indented line each (then schedules, queues).
  const targets = r.stdout.split(/^Deployed .* triggers.*$/m)[1] ?? "";
  deployedUrl ??= targets.match(/^\s+(https?:\/\/\S+)\s*$/m)?.[1] ?? (config.vars.PUBLIC_URL || undefined);
  showSecrets();
  if (deployedUrl) {
    deployedUrl = deployedUrl.replace(/\/+$/, "");
    mkdirSync(path.join(path.dirname(configPath), ".wrangler"), { recursive: true });
    writeFileSync(path.join(path.dirname(configPath), ".wrangler", "mailhook-deployed.json"), JSON.stringify({ url: deployedUrl }) + "\n");
  }
  return deployedUrl ? `deployed at ${deployedUrl}` : "deployed";
}

async function health() {
  if (!deployedUrl) {
    return "skipped: wrangler printed no workers.dev address (a custom domain?); check it with npm run mailhook -- doctor --url https://<your route>, and set PUBLIC_URL";
  }
  let last;
  for (let i = 0; i < 15; i++) {
    try {
      const res = await fetch(`${deployedUrl}/healthz`, { signal: AbortSignal.timeout(10_000) });
      last = { status: res.status, json: await res.json().catch(() => null) };
    } catch (e) {
      last = { error: e.cause?.code ?? e.message };
    }
    // A new workers.dev address takes a moment to answer: no answer, 404, or Cloudflare's own 52x meanwhile.
    if (last.status && last.status !== 404 && last.status < 520) break;
    await new Promise((r) => setTimeout(r, 2000));
  }
  const mailhook = last.json && typeof last.json.version === "string";
  const notOurs = `${deployedUrl}/healthz did not answer as mailhook does (${last.error ?? `${last.status}${mailhook ? "" : ", not mailhook's JSON"}`})`;
  if (last.status === 503 && mailhook) throw new Stop(`the deployed Worker answers /healthz with 503: ${last.json.error}`, "set what it names (wrangler.toml [vars], then npm run deploy again; or `npx wrangler secret put NAME`)");
  if (last.status !== 200 || !mailhook) throw new Stop(notOurs, `if a route or proxy is in front of it, pass --url; check it again in a minute with npm run mailhook -- doctor --url ${deployedUrl}`);
  report(last.json);
  return `mailhook ${last.json.version} answers`;
}

/** What is left to do: each provider's URL and state, destinations' problems, warnings. */
function report(h) {
  console.log(`\nmailhook is deployed at ${deployedUrl}\n\nProviders (each: npm run mailhook -- connect NAME prints what to paste where, and waits for its test event):`);
  for (const p of PROVIDERS) {
    const configured = h.providers?.[p.name]?.configured;
    const where = p.route === false ? "Email Routing rule: Send to a Worker, mailhook" : `${deployedUrl}/webhooks/${p.name}`;
    console.log(`  ${p.name.padEnd(14)} ${where}  ${configured === false ? `not configured${p.secret ? ` (${p.secret} not set)` : ""}` : configured ? "configured" : "unknown to this version"}`);
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
