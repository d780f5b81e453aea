// `npm run deploy`'s account steps: the login, the queues, the KV namespace and the D1 database. Each looks at
// what exists first and creates only what is missing, so a rerun finishes what a failed run left.
import { jsonOf, said, wrangler } from "./wrangler.mjs";

/** A step that could not be done: what went wrong, and what to do. */
export class Stop extends Error {
  constructor(message, fix) {
    super(message);
    this.fix = fix;
  }
}

const AGAIN = "then run npm run deploy again";

/**
 * The deploy's account context: `config` (wrangler --config, or undefined), `file` (wrangler.toml's path), `name`
 * (the Worker), `writeId(table, match, value, key, id)`, and `workerExists()` (whether the Worker is deployed).
 */
export function account(ctx) {
  /** Runs wrangler; a failure stops the deploy with wrangler's own words. */
  async function must(args, what) {
    const r = await wrangler(args, { config: ctx.config });
    if (r.code !== 0) throw new Stop(`${what} failed (wrangler ${args.slice(0, 3).join(" ")}):\n    ${said(r)}`, `fix what wrangler says, ${AGAIN}`);
    return r;
  }

  /** The JSON a wrangler command printed (a list, with `list`); anything else stops the deploy (never read as "nothing there"). */
  async function json(args, what, { list = false } = {}) {
    const r = await must(args, what);
    const value = jsonOf(r.stdout);
    if (list ? !Array.isArray(value) : value === null || typeof value !== "object") {
      throw new Stop(`${what}: wrangler ${args.slice(0, 3).join(" ")} printed no JSON:\n    ${said(r)}`, `check that \`npx wrangler ${args.join(" ")}\` works, ${AGAIN}`);
    }
    return value;
  }

  let bound; // the deployed Worker's bindings by name, read once (null: no Worker deployed)
  /** The bindings of the version serving all of the Worker's traffic: what a resource without an id in wrangler.toml is. */
  async function deployedBindings() {
    if (bound !== undefined) return bound;
    if (!(await ctx.workerExists())) return (bound = null);
    const status = await json(["deployments", "status", "--json"], "reading the Worker's deployment");
    const version = [...(status.versions ?? [])].sort((a, b) => b.percentage - a.percentage)[0]?.version_id;
    if (!version) return (bound = {});
    const v = await json(["versions", "view", version, "--json"], "reading the deployed version's bindings");
    return (bound = Object.fromEntries((v.resources?.bindings ?? []).map((b) => [b.name, b])));
  }

  async function login() {
    const r = await wrangler(["whoami", "--json"], { config: ctx.config });
    const me = jsonOf(r.stdout);
    if (me?.loggedIn !== true) {
      if (r.code !== 0 && !/not (authenticated|logged in)|loggedIn/i.test(said(r))) {
        throw new Stop(`wrangler whoami failed:\n    ${said(r)}`, `fix what wrangler says (no network? Cloudflare's API down?), ${AGAIN}`);
      }
      throw new Stop("wrangler is not logged in to Cloudflare", `run \`npx wrangler login\` (or set CLOUDFLARE_API_TOKEN to a token that can edit Workers, KV, D1, R2 and Queues), ${AGAIN}`);
    }
    // Without a terminal, wrangler cannot ask which account: every later call would fail.
    const accounts = me.accounts ?? [];
    if (accounts.length > 1 && !process.env.CLOUDFLARE_ACCOUNT_ID && !ctx.accountId) {
      throw new Stop(
        `this login has ${accounts.length} accounts (${accounts.map((a) => `${a.name}: ${a.id}`).join(", ")})`,
        `choose one: CLOUDFLARE_ACCOUNT_ID=<id> npm run deploy (or account_id = "<id>" in wrangler.toml)`,
      );
    }
    return `logged in${me.email ? ` as ${me.email}` : ""}`;
  }

  async function queue(q) {
    const info = await wrangler(["queues", "info", q], { config: ctx.config });
    if (info.code === 0 && new RegExp(`^Queue Name: ${q}\\s*$`, "m").test(info.stdout)) return "exists";
    // (A name filter that answered another queue means this one is missing too.)
    if (info.code !== 0 && !/does not exist|not found|11000/i.test(said(info))) {
      throw new Stop(`looking for queue ${q} failed:\n    ${said(info)}`, `fix what wrangler says, ${AGAIN}`);
    }
    const r = await wrangler(["queues", "create", q], { config: ctx.config });
    if (r.code === 0) return "created";
    if (/already (exists|taken)/i.test(said(r))) return "exists";
    throw new Stop(`creating queue ${q} failed:\n    ${said(r)}`, `fix what wrangler says (Queues needs the Workers Paid plan), ${AGAIN}`);
  }

  /**
   * The resource for `binding`: the one of `id` (wrangler.toml's, which must exist), else the one the deployed Worker is
   * bound to, else the one listed whose `key` is one of `names`, else a new one, unless the Worker is already deployed
   * (a new empty one would replace its data). Its id is written into wrangler.toml.
   */
  async function findOrCreate({ what, listArgs, id, names, key, create, table, match, matchValue, idKey, idOf, binding, boundId }) {
    const relist = () => json(listArgs, `listing ${what}s`, { list: true });
    const all = await relist();
    if (id) {
      if (all.some((x) => idOf(x) === id)) return `${id} exists`;
      throw new Stop(`${what} ${id} (${matchValue} in ${ctx.file}) is not in this account`, "put the id of one that is there, or log in to the account that has it");
    }
    // A deployed Worker's own binding decides; names are looked for only when there is none.
    const deployed = (await deployedBindings())?.[binding];
    const boundTo = deployed && boundId(deployed);
    const found = boundTo ? all.filter((x) => idOf(x) === boundTo) : names.flatMap((n) => all.filter((x) => x[key] === n));
    if (boundTo && !found.length) {
      throw new Stop(`the Worker ${ctx.name} is bound to ${what} ${boundTo}, which is not in this account`, `put the id of the ${what} to use in ${ctx.file} (${idKey} = "…" under ${matchValue}), ${AGAIN}`);
    }
    if (found.length > 1) {
      throw new Stop(
        `several ${what}s could be mailhook's: ${found.map((x) => `"${x[key]}" (${idOf(x)})`).join(", ")}`,
        `put the id of the one your Worker uses in ${ctx.file} (${idKey} = "…" under ${matchValue}), ${AGAIN}`,
      );
    }
    let item = found[0];
    let outcome = boundTo ? `the Worker's own, "${item[key]}"` : `found "${item?.[key]}"`;
    if (!item) {
      if (await ctx.workerExists()) {
        throw new Stop(
          `the Worker ${ctx.name} is deployed, but no ${what} named ${names.map((n) => `"${n}"`).join(" or ")} is in this account`,
          `put the id of the ${what} it uses in ${ctx.file} (${idKey} = "…" under ${matchValue}; \`npx wrangler ${what === "KV namespace" ? "kv namespace list" : "d1 list"}\` lists them), ${AGAIN}; a new empty one would lose its data`,
        );
      }
      await must(create, `creating ${what} ${names[0]}`);
      item = (await relist()).find((x) => x[key] === names[0]);
      if (!item) throw new Stop(`${what} ${names[0]} was created but is not listed`, AGAIN);
      outcome = `created "${names[0]}"`;
    }
    try {
      ctx.writeId(table, match, matchValue, idKey, idOf(item));
    } catch (e) {
      throw new Stop(`${ctx.file} could not be written: ${e.message}`, `add ${idKey} = "${idOf(item)}" to ${matchValue}'s binding yourself, ${AGAIN}`);
    }
    return `${outcome}, id ${idOf(item)} written`;
  }

  function kv(k) {
    // The name wrangler's automatic provisioning gives it, then those of the old README's `kv namespace create DEDUPE`.
    const names = [kvTitle(ctx.name, k.binding), k.binding, `${ctx.name}-${k.binding}`];
    return findOrCreate({
      what: "KV namespace",
      listArgs: ["kv", "namespace", "list"],
      id: k.id,
      names,
      key: "title",
      create: ["kv", "namespace", "create", names[0]],
      table: "kv_namespaces",
      match: "binding",
      matchValue: k.binding,
      idKey: "id",
      idOf: (n) => n.id,
      binding: k.binding,
      boundId: (b) => (b.type === "kv_namespace" ? b.namespace_id : undefined),
    });
  }

  function d1(d) {
    return findOrCreate({
      what: "D1 database",
      listArgs: ["d1", "list", "--json"],
      id: d.id,
      names: [d.name],
      key: "name",
      create: ["d1", "create", d.name],
      table: "d1_databases",
      match: "database_name",
      matchValue: d.name,
      idKey: "database_id",
      idOf: (db) => db.uuid,
      binding: d.binding,
      boundId: (b) => (b.type === "d1" ? (b.id ?? b.database_id) : undefined),
    });
  }

  async function migrate(d) {
    const r = await must(["d1", "migrations", "apply", d.name, "--remote"], `applying the migrations to ${d.name}`);
    return /No migrations to apply/i.test(r.stdout) ? "none to apply" : "applied";
  }

  return { login, queue, kv, d1, migrate };
}

/** The title wrangler's automatic provisioning gives a KV namespace: the Worker's name and the binding's. */
export const kvTitle = (worker, binding) => `${worker}-${binding.toLowerCase().replaceAll("_", "-")}`;
