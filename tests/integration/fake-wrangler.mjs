// A recording stand-in for wrangler (MAILHOOK_WRANGLER): the commands `npm run deploy` and `connect` call, answered
// as wrangler 4.86 answers them (read from its source), against an account kept in a JSON file.
//
//   FAKE_WRANGLER_STATE  the account: { loggedIn, kv: [{id, title}], d1: [{uuid, name, migrations: []}], queues: [],
//                        r2: [], worker: null | { bindings, secrets: {name: value}, versions }, fail: ["d1 migrations apply", …] }
//                        (`fail`: each entry fails the next call that starts with it, once; "after-upload" fails
//                        the next deploy after it stored the Worker and its secrets)
//   FAKE_WRANGLER_LOG    one JSON line per call: { args, stdin: its length } (never what was on standard input)
//   FAKE_WRANGLER_URL    the address `deploy` prints (the local Worker)
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { parse } from "smol-toml";

const stateFile = process.env.FAKE_WRANGLER_STATE;
const state = JSON.parse(readFileSync(stateFile, "utf8"));
state.fail ??= [];
const save = () => writeFileSync(stateFile, JSON.stringify(state, null, 2));

let args = process.argv.slice(2);
let configPath = "wrangler.toml";
const ci = args.indexOf("--config");
if (ci >= 0) {
  configPath = args[ci + 1];
  args = [...args.slice(0, ci), ...args.slice(ci + 2)];
}
const stdin = process.stdin.isTTY ? "" : readFileSync(0, "utf8");
appendFileSync(process.env.FAKE_WRANGLER_LOG, JSON.stringify({ args: process.argv.slice(2), stdin: stdin.length }) + "\n");

function die(message, code = 1) {
  process.stderr.write(`\n✘ [ERROR] ${message}\n\n`);
  process.exit(code);
}
const joined = args.join(" ");
const failing = (state.fail ?? []).findIndex((f) => joined.startsWith(f));
if (failing >= 0) {
  state.fail.splice(failing, 1);
  save();
  die("A request to the Cloudflare API (/accounts/x) failed.\n\n  Service unavailable [code: 10013] (simulated)");
}
if (args[0] !== "whoami" && !state.loggedIn) die("You are not logged in. Run `wrangler login`.");

const config = () => parse(readFileSync(configPath, "utf8"));
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const commands = {
  "whoami"() {
    if (!state.loggedIn) die("You are not authenticated. Please run `wrangler login`.");
    console.log(JSON.stringify({ loggedIn: true, authType: "OAuth Token", email: "dev@example.com", accounts: state.accounts ?? [{ id: "acc", name: "Test" }] }));
  },
  "queues info"([name]) {
    if (!state.queues.includes(name)) die(`A request to the Cloudflare API failed.\n\n  Queue "${name}" does not exist. [code: 11000]`);
    console.log(`Queue Name: ${name}\nQueue ID: ${name}-id`);
  },
  "queues create"([name]) {
    if (state.queues.includes(name)) die(`A request to the Cloudflare API failed.\n\n  Queue name '${name}' is already taken. [code: 11009]`);
    state.queues.push(name);
    console.log(`🌀 Creating queue '${name}'\n✅ Created queue '${name}'`);
  },
  "kv namespace list"() {
    console.log(JSON.stringify(state.kv, null, "  "));
  },
  "kv namespace create"([title]) {
    if (state.kv.some((n) => n.title === title)) die(`A KV namespace with the title "${title}" already exists.`);
    const id = randomBytes(16).toString("hex");
    state.kv.push({ id, title });
    console.log(`🌀 Creating namespace with title "${title}"\n✨ Success!\nTo access your new KV Namespace in your Worker, add the following snippet to your configuration file:\n[[kv_namespaces]]\nbinding = "${title}"\nid = "${id}"`);
  },
  "d1 list"() {
    console.log(JSON.stringify(state.d1.map(({ uuid, name }) => ({ uuid, name, version: "production" })), null, 2));
  },
  "d1 create"([name]) {
    if (state.d1.some((d) => d.name === name)) die(`A database with that name already exists [code: 7502]`);
    const uuid = randomUUID();
    state.d1.push({ uuid, name, migrations: [] });
    console.log(`✅ Successfully created DB '${name}'\n\n[[d1_databases]]\nbinding = "DB"\ndatabase_name = "${name}"\ndatabase_id = "${uuid}"`);
  },
  "d1 migrations apply"([name]) {
    if (!args.includes("--remote")) die("the stand-in only applies remotely");
    const entry = (config().d1_databases ?? []).find((d) => d.database_name === name || d.binding === name);
    if (!entry) die(`Couldn't find a D1 DB with the name or binding '${name}' in your wrangler.toml file.`);
    if (!entry.database_id) die(`Found a database with name or binding ${name} but it is missing a database_id, which is needed for operations on remote resources.`);
    const db = state.d1.find((d) => d.uuid === entry.database_id);
    if (!db) die(`A request to the Cloudflare API failed.\n\n  The database ${entry.database_id} could not be found [code: 7404]`);
    const dir = path.join(path.dirname(configPath), entry.migrations_dir ?? "migrations");
    const pending = readdirSync(dir).filter((f) => f.endsWith(".sql") && !db.migrations.includes(f)).sort();
    if (!pending.length) return console.log("✅ No migrations to apply!");
    console.log(`Migrations to be applied:\n${pending.join("\n")}\n? About to apply ${pending.length} migration(s)\n🤖 Using fallback value in non-interactive context: yes`);
    db.migrations.push(...pending);
  },
  "secret list"() {
    if (!state.worker) die(`Worker "mailhook" not found.\n\nIf this is a new Worker, run \`wrangler deploy\` first to create it.`);
    console.log(JSON.stringify(Object.keys(state.worker.secrets).map((name) => ({ name, type: "secret_text" })), null, "  "));
  },
  "secret put"([name]) {
    state.worker ??= { bindings: {}, secrets: {}, versions: 0 };
    state.worker.secrets[name] = stdin.replace(/\s+$/, "");
    console.log(`🌀 Creating the secret for the Worker "mailhook"\n✨ Success! Uploaded secret ${name}`);
  },
  "secret delete"([name]) {
    if (!state.worker?.secrets[name]) die(`Secret ${name} not found [code: 10056]`);
    delete state.worker.secrets[name];
    console.log(`✨ Success! Deleted secret ${name}`);
  },
  "deployments status"() {
    if (!state.worker) die("The Worker mailhook has no deployments.");
    console.log(JSON.stringify({ id: "dep-1", source: "wrangler", versions: [{ version_id: `v${state.worker.versions}`, percentage: 100 }] }, null, 2));
  },
  "versions view"([id]) {
    if (!state.worker || id !== `v${state.worker.versions}`) die(`A request to the Cloudflare API failed.\n\n  version not found [code: 10221]`);
    // The Workers API's binding forms: kv_namespace with namespace_id, d1 with id, r2_bucket with bucket_name.
    const bindings = Object.entries(state.worker.bindings).map(([name, v]) =>
      state.kv.some((n) => n.id === v)
        ? { type: "kv_namespace", name, namespace_id: v }
        : state.d1.some((d) => d.uuid === v)
          ? { type: "d1", name, id: v }
          : { type: "r2_bucket", name, bucket_name: v },
    );
    console.log(JSON.stringify({ id, metadata: {}, resources: { bindings, script: {} } }, null, 2));
  },
  "deploy"() {
    // `slowDeploy` (ms): a build taking its time, for a test to interrupt.
    if (state.slowDeploy) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, state.slowDeploy);
    const c = config();
    const bindings = { ...(state.worker?.bindings ?? {}) };
    for (const k of c.kv_namespaces ?? []) {
      let id = k.id ?? bindings[k.binding];
      if (!id) {
        // Automatic provisioning: a new namespace named after the Worker and the binding.
        const title = `${c.name}-${k.binding.toLowerCase().replaceAll("_", "-")}`;
        if (state.kv.some((n) => n.title === title)) die(`A request to the Cloudflare API failed.\n\n  a namespace with this account ID and title already exists [code: 10014]`);
        id = randomBytes(16).toString("hex");
        state.kv.push({ id, title });
      }
      if (!state.kv.some((n) => n.id === id)) die(`KV namespace '${id}' is not valid. [code: 10041]`);
      bindings[k.binding] = id;
    }
    for (const d of c.d1_databases ?? []) {
      const id = d.database_id ?? state.d1.find((x) => x.name === d.database_name)?.uuid;
      if (!state.d1.some((x) => x.uuid === id)) die(`D1 binding ${d.binding}: database not found [code: 7404]`);
      bindings[d.binding] = id;
    }
    for (const b of c.r2_buckets ?? []) {
      if (!state.r2.includes(b.bucket_name)) state.r2.push(b.bucket_name);
      bindings[b.binding] = b.bucket_name;
    }
    const file = flag("--secrets-file");
    const secrets = file ? JSON.parse(readFileSync(file, "utf8")) : {};
    state.worker = { bindings, secrets: { ...(state.worker?.secrets ?? {}), ...secrets }, versions: (state.worker?.versions ?? 0) + 1 };
    save(); // uploaded: whatever fails next, the Worker and its secrets are stored
    console.log(`Total Upload: 3500.00 KiB / gzip: 1200.00 KiB\nUploaded ${c.name} (1.00 sec)`);
    // As wrangler does, the queues are attached with the triggers, after the upload.
    for (const q of c.queues.producers) if (!state.queues.includes(q.queue)) die(`A request to the Cloudflare API failed.\n\n  Queue "${q.queue}" does not exist. To create it, run: wrangler queues create ${q.queue} [code: 11000]`);
    // "after-upload" in `fail`: the triggers fail once the Worker and its secrets are uploaded (a new account's
    // workers.dev subdomain not registered yet, say).
    const after = state.fail.indexOf("after-upload");
    if (after >= 0) {
      state.fail.splice(after, 1);
      save();
      die("A request to the Cloudflare API (/accounts/acc/workers/subdomain) failed.\n\n  You need to register a workers.dev subdomain before publishing to workers.dev [code: 10063]");
    }
    console.log(`Deployed ${c.name} triggers (0.50 sec)\n  ${process.env.FAKE_WRANGLER_URL}\n  schedule: 17 3 * * *\n  Producer for mailhook-events\nCurrent Version ID: ${randomUUID()}`);
  },
};

const key = [3, 2, 1].map((n) => args.slice(0, n).join(" ")).find((k) => commands[k]);
if (!key) die(`the stand-in does not know \`wrangler ${joined}\``);
commands[key](args.slice(key.split(" ").length).filter((a) => !a.startsWith("--")));
save();
