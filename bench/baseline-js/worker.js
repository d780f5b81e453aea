// The reference a team would otherwise write: a hand-made JavaScript Worker
// that does mailhook's job for Maileroo alone. WebCrypto HMAC-SHA256 over the
// raw body (constant time via crypto.subtle.verify), the same JSON mapping to
// the canonical event, KV dedupe, a queue send, and the same structured log
// line per request that mailhook writes (kind, method, path, provider, status,
// ids, ms, wasm_kib, ops). Used only by `npm run bench`.

const TYPES = {
  accepted: "email.queued", delivered: "email.delivered", rejected: "email.rejected", deferred: "email.deferred",
  failed: "email.bounced", opened: "email.opened", clicked: "email.clicked", complained: "email.complained",
};

const enc = new TextEncoder();
let keyPromise;

function hexToBytes(hex) {
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function json(status, body) {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

const addresses = (v) =>
  (Array.isArray(v) ? v : typeof v === "string" ? v.split(",") : [])
    .map((s) => String(s).trim())
    .filter(Boolean)
    .map((s) => {
      const m = s.match(/^\s*"?([^"<]*?)"?\s*<([^>]+)>\s*$/);
      return m ? { email: m[2].trim(), name: m[1].trim() || null } : { email: s, name: null };
    });

const newOps = () => ({
  requests: 1, kv_read: 0, kv_write: 0, queue_write: 0, queue_read: 0, queue_delete: 0,
  r2_class_a: 0, r2_class_b: 0, d1_queries: 0, d1_rows_read: 0, d1_rows_written: 0, subrequests: 0,
});

export default {
  async fetch(request, env) {
    const started = Date.now();
    const ops = newOps();
    const url = new URL(request.url);
    const { response, ids = [] } = await handle(request, url, env, ops);
    const path = url.pathname;
    console.log(JSON.stringify({
      kind: "request", method: request.method, path, provider: "maileroo", status: response.status, ids,
      ms: Date.now() - started, wasm_kib: 0, ops,
    }));
    return response;
  },
};

async function handle(request, url, env, ops) {
  if (url.pathname !== "/webhooks/maileroo") return { response: json(404, { error: { code: "not_found", message: "no such route" } }) };
  if (request.method !== "POST") return { response: json(405, { error: { code: "method_not_allowed", message: "POST only" } }) };

  const raw = await request.arrayBuffer();
  const sig = hexToBytes((request.headers.get("x-maileroo-signature") || "").trim());
  keyPromise ??= crypto.subtle.importKey("raw", enc.encode(env.MAILEROO_WEBHOOK_SECRET), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  if (!sig || !(await crypto.subtle.verify("HMAC", await keyPromise, sig, raw))) {
    return { response: json(401, { error: { code: "unauthorized", message: "bad signature" } }) };
  }
  let p;
  try {
    p = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    return { response: json(400, { error: { code: "bad_request", message: "invalid JSON" } }) };
  }
  if (!p || typeof p.event_type !== "string") return { response: json(400, { error: { code: "bad_request", message: "not a Maileroo payload" } }) };
  const age = Date.now() / 1000 - Number(p.event_time);
  if (!(age <= Number(env.MAX_EVENT_AGE_SECONDS))) return { response: json(400, { error: { code: "stale_event", message: "too old" } }) };

  const digest = await crypto.subtle.digest("SHA-256", enc.encode(`maileroo\u0000${p.event_id}`));
  const id = "evt_" + [...new Uint8Array(digest).slice(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("");
  ops.kv_read += 1;
  if (await env.DEDUPE.get(`dedupe:${id}`)) return { response: json(200, { status: "duplicate", ids: [id] }), ids: [id] };

  const d = p.event_data || {};
  const type = TYPES[p.event_type] || "email.unknown";
  const to = addresses(d.to);
  const reason = d.reason ?? null;
  const event = {
    specversion: "1.0", id, source: "/providers/maileroo", type,
    time: new Date(Number(p.event_time) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
    subject: p.message_id ?? null, datacontenttype: "application/json",
    data: {
      provider: "maileroo", provider_event_type: p.event_type, provider_event_id: p.event_id ?? null,
      message_id: p.message_id ?? null, from: addresses(d.from)[0] ?? null, to, cc: [], bcc: [],
      recipient: to[0]?.email ?? null, subject: p.subject ?? null,
      tags: Array.isArray(p.tags) ? p.tags.filter((t) => typeof t === "string") : [],
      metadata: { domain_id: p.domain_id, user_id: p.user_id, message_reference_id: p.message_reference_id },
      bounce: ["failed", "deferred", "rejected"].includes(p.event_type)
        ? { kind: { failed: "hard", deferred: "soft" }[p.event_type] ?? null, reason, diagnostic_code: reason?.match(/^\d{3}/)?.[0] ?? null }
        : null,
      click: d.original_url ? { url: d.original_url } : null,
      client: d.ip || d.user_agent ? { ip: d.ip ?? null, user_agent: d.user_agent ?? null } : null,
      inbound: null, mailbox: null, raw: p,
    },
  };
  try {
    const message = JSON.stringify({ id, provider: "maileroo", type, attempt: 0, event });
    ops.queue_write += Math.max(1, Math.ceil((message.length + 100) / 64000));
    await env.EVENTS.send(message, { contentType: "text" });
  } catch {
    return { response: json(503, { error: { code: "unavailable", message: "queue send failed" } }) };
  }
  ops.kv_write += 1;
  await env.DEDUPE.put(`dedupe:${id}`, "1", { expirationTtl: Number(env.DEDUPE_TTL_SECONDS) });
  return { response: json(200, { status: "accepted", ids: [id] }), ids: [id] };
}
