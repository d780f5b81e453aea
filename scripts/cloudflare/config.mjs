// What `npm run deploy` reads from wrangler.toml: the resources it names, the secrets its settings need, and
// the settings that cannot work once deployed. Pure functions of the file's text, tested without wrangler.
import { parse } from "smol-toml";
import { PROVIDERS } from "./providers.mjs";

/** An id left as wrangler.toml's old placeholder (all zeros) counts as no id. */
export const isPlaceholder = (id) => !id || /^[0-]+$/.test(id);

/** A destination's signing-secret variable, as the Worker names it (src/destinations/mod.rs `secret_name`). */
export const destinationSecret = (name) => `DESTINATION_${name.toUpperCase().replaceAll("-", "_")}_SIGNING_SECRET`;

/** The destinations the Worker will deliver to: DESTINATIONS, and "origin" when ORIGIN_URL is set or none is declared. */
export function destinations(vars) {
  let declared = vars.DESTINATIONS ?? [];
  if (typeof declared === "string") {
    try {
      declared = JSON.parse(declared);
    } catch {
      declared = [];
    }
  }
  if (!Array.isArray(declared)) declared = [declared];
  const out = declared
    .filter((d) => d && typeof d.name === "string")
    .map((d) => ({ name: d.name, url: d.url ?? "", secret: destinationSecret(d.name), links: d.attachments === "link" || d.max_body_bytes !== undefined }));
  if (vars.ORIGIN_URL || out.length === 0) {
    const links = vars.ORIGIN_ATTACHMENTS === "link" || Boolean(vars.ORIGIN_MAX_BODY_BYTES);
    out.push({ name: "origin", url: vars.ORIGIN_URL ?? "", secret: "ORIGIN_SIGNING_SECRET", links });
  }
  return out;
}

/** A URL Cloudflare cannot reach (this machine, a private network): a deployed Worker would dead-letter everything. */
export function unreachable(url) {
  let host;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, "").toLowerCase();
  } catch {
    return false;
  }
  return (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    host === "::1" ||
    host === "0.0.0.0" ||
    /^127\./.test(host) ||
    /^10\./.test(host) ||
    /^192\.168\./.test(host) ||
    /^172\.(1[6-9]|2\d|3[01])\./.test(host)
  );
}

/**
 * Reads wrangler.toml's text: { name, queues, kv, d1, r2, vars, destinations, problems }. `problems` are settings
 * that cannot work deployed, each with its fix; deploy stops on them before it calls anything.
 */
export function readConfig(text) {
  const toml = parse(text);
  const vars = toml.vars ?? {};
  const queues = [
    ...new Set(
      [
        ...(toml.queues?.producers ?? []).map((p) => p.queue),
        ...(toml.queues?.consumers ?? []).flatMap((c) => [c.queue, c.dead_letter_queue]),
      ].filter(Boolean),
    ),
  ];
  const dests = destinations(vars);
  const problems = [];
  for (const d of dests) {
    if (!d.url) continue;
    if (unreachable(d.url)) {
      const where = d.name === "origin" ? "ORIGIN_URL" : `destination "${d.name}"'s url`;
      problems.push(
        `${where} is ${d.url}, which Cloudflare cannot reach (it is on this machine or a private network; the default is npm start's demo origin). ` +
          `Set it to your application's public https URL in wrangler.toml [vars]${d.name === "origin" ? ', or declare DESTINATIONS and set ORIGIN_URL = ""' : ""}, then run npm run deploy again.`,
      );
    }
  }
  return {
    name: toml.name,
    queues,
    kv: (toml.kv_namespaces ?? []).map((k) => ({ binding: k.binding, id: isPlaceholder(k.id) ? null : k.id })),
    d1: (toml.d1_databases ?? []).map((d) => ({
      binding: d.binding,
      name: d.database_name,
      id: isPlaceholder(d.database_id) ? null : d.database_id,
      migrationsDir: d.migrations_dir ?? "migrations",
    })),
    r2: (toml.r2_buckets ?? []).map((b) => b.bucket_name),
    vars,
    destinations: dests,
    problems,
  };
}

/**
 * The secrets the configuration needs: { generated: [{ name, show }], asked, console }.
 * `asked` are PROVIDERS with a secret. Signing secrets are generated (`show`: printed once, for the destination's side to verify with); the link
 * key is generated and never shown; providers' secrets are asked for; ADMIN_TOKEN (the console) is offered.
 */
export function requiredSecrets(config) {
  const generated = config.destinations.map((d) => ({ name: d.secret, show: true, kind: "signing", destination: d.name }));
  if (config.destinations.some((d) => d.links)) generated.push({ name: "LINK_SIGNING_KEY", show: false, kind: "link" });
  return { generated, asked: PROVIDERS.filter((p) => p.secret), console: "ADMIN_TOKEN" };
}

/**
 * Sets `key = "value"` in the `[[table]]` block whose `match` key equals `matchValue`, in place of the key's line or
 * after the `match` line; the rest of the file (comments, order) is kept. Returns the new text.
 */
export function setInBlock(text, table, match, matchValue, key, value) {
  const lines = text.split("\n");
  let start = -1;
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== `[[${table}]]`) continue;
    let end = i + 1;
    while (end < lines.length && !/^\s*\[/.test(lines[end])) end++;
    const block = lines.slice(i + 1, end);
    const m = block.findIndex((l) => new RegExp(`^\\s*${match}\\s*=\\s*"${escape(matchValue)}"`).test(l));
    if (m < 0) {
      i = end - 1;
      continue;
    }
    start = i;
    const existing = block.findIndex((l) => new RegExp(`^\\s*${key}\\s*=`).test(l));
    const line = `${key} = ${JSON.stringify(value)}`;
    if (existing >= 0) lines[i + 1 + existing] = line;
    else lines.splice(i + 2 + m, 0, line);
    break;
  }
  if (start < 0) throw new Error(`wrangler.toml has no [[${table}]] with ${match} = "${matchValue}"`);
  return lines.join("\n");
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
