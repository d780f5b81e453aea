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
  // As the Worker reads them (src/destinations/declare.rs, src/config.rs): names trimmed and lower-cased, every
  // variable trimmed (blank: unset), `attachments` in any case.
  const text = (v) => (typeof v === "string" ? v.trim() : v === undefined || v === null ? "" : String(v));
  const isLink = (v) => text(v).toLowerCase() === "link";
  const out = declared
    .filter((d) => d && typeof d.name === "string")
    .map((d) => {
      const name = d.name.trim().toLowerCase();
      return { name, url: text(d.url), secret: destinationSecret(name), links: isLink(d.attachments) || d.max_body_bytes !== undefined };
    });
  const origin = text(vars.ORIGIN_URL);
  if (origin || out.length === 0) {
    const links = isLink(vars.ORIGIN_ATTACHMENTS) || Boolean(text(vars.ORIGIN_MAX_BODY_BYTES));
    out.push({ name: "origin", url: origin, secret: "ORIGIN_SIGNING_SECRET", links });
  }
  return out;
}

/** A URL Cloudflare cannot reach (this machine, a private network): a deployed Worker would dead-letter everything. */
export function unreachable(url) {
  let host;
  try {
    host = new URL(url).hostname.replace(/^\[|\]$/g, "").replace(/\.$/, "").toLowerCase();
  } catch {
    return false;
  }
  if (host === "localhost" || /\.(localhost|local|internal|lan|home\.arpa)$/.test(host) || !host.includes(".") && !host.includes(":")) return true;
  if (host.includes(":")) {
    // IPv6: unspecified, loopback, unique local (fc00::/7), link-local (fe80::/10), or an IPv4 address mapped into it.
    const mapped = host.match(/^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/); // the URL parser writes ::ffff:10.0.0.1 so
    if (mapped) {
      const [hi, lo] = [parseInt(mapped[1], 16), parseInt(mapped[2], 16)];
      return privateV4(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
    }
    return host === "::" || host === "::1" || /^f[cd][0-9a-f]{0,2}:/.test(host) || /^fe[89ab][0-9a-f]?:/.test(host);
  }
  return /^\d+\.\d+\.\d+\.\d+$/.test(host) && privateV4(host);
}

function privateV4(ip) {
  const [a, b] = ip.split(".").map(Number);
  return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127);
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
  // The Worker refuses these (src/destinations/declare.rs) and answers 503: said before anything is changed.
  for (const [i, d] of dests.entries()) {
    if (!/^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/.test(d.name)) {
      problems.push(`destination "${d.name}": the name must be 1 to 32 letters, digits and inner hyphens, like crm or support-desk; rename it in wrangler.toml [vars]`);
    } else if (dests.findIndex((o) => o.name === d.name) !== i) {
      problems.push(`destination "${d.name}": the name is used twice (names are read trimmed and in lower case; "origin" is ORIGIN_URL's); give each destination its own name`);
    }
  }
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
    accountId: toml.account_id,
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
 * after the `match` line; the rest of the file (comments, order, line endings) is kept. Returns the new text, or
 * throws when no such block is written as `[[table]]` with `match = "value"` lines (an inline table, say).
 */
export function setInBlock(text, table, match, matchValue, key, value) {
  const eol = text.includes("\r\n") ? "\r\n" : "\n";
  const lines = text.split(/\r?\n/);
  const header = new RegExp(`^\\s*\\[\\[\\s*${escape(table)}\\s*\\]\\]\\s*(#.*)?$`);
  const keyLine = (k) => new RegExp(`^\\s*(${escape(k)}|"${escape(k)}"|'${escape(k)}')\\s*=`);
  const valueOf = (line) => line.replace(/^[^=]*=\s*/, "").match(/^"((?:[^"\\]|\\.)*)"|^'([^']*)'/);
  for (let i = 0; i < lines.length; i++) {
    if (!header.test(lines[i])) continue;
    let end = i + 1;
    while (end < lines.length && !/^\s*\[/.test(lines[end])) end++;
    const block = lines.slice(i + 1, end);
    const m = block.findIndex((l) => {
      if (!keyLine(match).test(l)) return false;
      const v = valueOf(l);
      return v && (v[1] ?? v[2]) === matchValue;
    });
    if (m >= 0) {
      const existing = block.findIndex((l) => keyLine(key).test(l));
      const line = `${key} = ${JSON.stringify(value)}`;
      if (existing >= 0) lines[i + 1 + existing] = line;
      else lines.splice(i + 2 + m, 0, line);
      return lines.join(eol);
    }
    i = end - 1;
  }
  throw new Error(`it has no [[${table}]] block with ${match} = "${matchValue}" written on lines of its own`);
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
