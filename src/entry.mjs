// The Worker's entry module (wrangler.toml `main`, copied to build/entry.mjs
// by scripts/build.sh).
//
// Webhooks (`POST /webhooks/{provider}`), the hot path, run here: this module
// does their I/O (KV, R2, D1, the queue, DoH), and the ingest module
// (build/ingest.wasm, src/abi.rs) makes every decision, synchronously: bytes
// in, a refusal or a plan out (src/pipeline.rs). No workers-rs, no async glue
// in Wasm, no `request.cf`. Everything else (the queue consumers, the admin
// API, the console, the crons, Email Routing's handler) is the workers-rs
// Worker (build/index.js), loaded the first time this isolate needs it.
//
// The invariant, as in the pipeline's doc: no 200 unless every new event is on
// the queue. A KV read that fails counts as "not seen" (the origin's
// webhook-id check absorbs a rare duplicate); a failure to store a large event,
// to record an unrouted one or to enqueue answers 503 and marks nothing.
import ingestWasm from "./ingest.wasm";

const JSON_HEADERS = { "content-type": "application/json" };
/// Bodies announced at most this long are read in one call; longer or unannounced ones in chunks into Wasm.
const SMALL_BODY = 64 * 1024;
const READ_CHUNK = 64 * 1024;
const DOH_TIMEOUT_MS = 5000;
const DOH_MAX_BYTES = 64 * 1024;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The refusals this module makes itself (as the ingest module's answers spell them). */
const refusal = (status, code, message) => ({ status, code, body: JSON.stringify({ error: { code, message } }) });
const UNREADABLE = refusal(400, "bad_request", "the request body could not be read; send it again");
const SHORT = refusal(400, "bad_request", "the body ended before its Content-Length; send it again");
// The request's state was forgotten (idle too long): never write to address 0.
const LOST = refusal(503, "unavailable", "the request's state was lost; nothing was accepted, please retry");

export default {
  fetch(request, env, ctx) {
    const path = pathOf(request.url);
    if (request.method === "POST" && path.startsWith("/webhooks/")) return webhook(request, env, path);
    return worker(env, ctx).then((w) => w.fetch(request));
  },
  queue: (batch, env, ctx) => worker(env, ctx).then((w) => w.queue(batch)),
  scheduled: (event, env, ctx) => worker(env, ctx).then((w) => w.scheduled(event)),
  email: (message, env, ctx) => worker(env, ctx).then((w) => w.email(message)),
};

/** The workers-rs Worker, instantiated on first use (a webhook-only isolate never pays for it). */
let Full;
async function worker(env, ctx) {
  Full ??= (await import("./index.js")).default;
  return new Full(ctx, env);
}

/** The path of a URL as the Fetch API serialises it (`new URL(url).pathname`, without parsing it again). */
function pathOf(url) {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  let end = url.length;
  for (const c of ["?", "#"]) {
    const i = url.indexOf(c, start);
    if (i >= 0 && i < end) end = i;
  }
  return url.slice(start, end);
}

const log = (fields) => console.log(JSON.stringify(fields));

/** The platform operations of one request, as the workers-rs half counts them (src/edge/ops.rs). */
const newOps = () => ({
  requests: 1, kv_read: 0, kv_write: 0, queue_write: 0, queue_read: 0, queue_delete: 0,
  r2_class_a: 0, r2_class_b: 0, d1_queries: 0, d1_rows_read: 0, d1_rows_written: 0, subrequests: 0,
});

/** One instance of the ingest module and its configuration; replaced after a trap (a panic: a bug). */
class Core {
  constructor(env) {
    this.x = new WebAssembly.Instance(ingestWasm, {}).exports;
    this.dead = false;
    const vars = {};
    for (const [name, value] of Object.entries(env)) {
      if (typeof value === "string") vars[name] = value;
      // Any other [vars] value as JSON text, as the workers-rs half reads it
      // (`MAX_EVENT_AGE_SECONDS = 3600`, `INCLUDE_RAW = false`, DESTINATIONS);
      // bindings are neither text nor plain data.
      else if (typeof value === "number" || typeof value === "boolean" || Array.isArray(value) || (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype)) {
        vars[name] = JSON.stringify(value);
      }
    }
    this.answer(this.x.mh_init(this.text(JSON.stringify(vars))));
  }

  bytes(ptr, len) {
    return new Uint8Array(this.x.memory.buffer, ptr, len);
  }

  /** Writes `s` into the input buffer; its length in bytes. */
  text(s) {
    const room = s.length * 3;
    const ptr = this.x.mh_input(room);
    return encoder.encodeInto(s, this.bytes(ptr, room)).written;
  }

  /** Copies `bytes` into the input buffer. */
  input(bytes) {
    this.bytes(this.x.mh_input(bytes.length), bytes.length).set(bytes);
  }

  answer(len) {
    return JSON.parse(decoder.decode(this.bytes(this.x.mh_output(), len)));
  }

  kib() {
    return this.x.memory.buffer.byteLength >> 10;
  }
}

let core;
const coreFor = (env) => (core ??= new Core(env));

/**
 * A failure of this request (a trap of the ingest module: a Rust panic, a stack
 * overflow; or a bug here): logged with the panic's message, and the instance
 * replaced for the next request. A panic leaves the instance's state borrowed,
 * so every later call into it would trap too; the requests still in flight on
 * it answer 503 at their next call, or finish if they need none.
 */
const failures = new WeakSet();
function failed(c, e) {
  if (e !== null && typeof e === "object") {
    if (failures.has(e)) return; // seen on its way out of ingest()
    failures.add(e);
  }
  // A trap of an instance already dead is that panic's echo, logged once by the request that hit it.
  if (c?.dead && (e instanceof WebAssembly.RuntimeError || e instanceof RangeError)) return;
  let message = String(e?.stack ?? e);
  if (c && !c.dead && e instanceof WebAssembly.RuntimeError) {
    try {
      const len = c.x.mh_panic();
      if (len > 0) message = decoder.decode(c.bytes(c.x.mh_panic_message(), len));
    } catch {}
  }
  if (c) c.dead = true;
  if (core === c) core = undefined;
  log({ kind: "panic", error: message });
}

async function webhook(request, env, path) {
  const started = Date.now();
  const ops = newOps();
  let c;
  let result;
  try {
    c = coreFor(env);
    result = await ingest(c, request, env, path, ops);
  } catch (e) {
    failed(c, e);
    result = { response: error(503, "unavailable", "mailhook failed on this request (logged as `panic`); nothing was accepted, please retry"), ids: [] };
  }
  const { response, provider = null, ids } = result;
  log({
    kind: "request", method: "POST", path, provider, status: response.status, ids,
    ms: Date.now() - started, wasm_kib: c?.kib() ?? 0, ops,
  });
  return response;
}

const error = (status, code, message) => new Response(refusal(status, code, message).body, { status, headers: JSON_HEADERS });

function refused(refuse, provider) {
  // An unknown route is no provider's refusal.
  if (provider) log({ kind: "refusal", provider, code: refuse.code });
  return { response: new Response(refuse.body, { status: refuse.status, headers: JSON_HEADERS }), provider, ids: [] };
}

function accepted(status, ids, provider) {
  return { response: new Response(JSON.stringify({ status, ids }), { headers: JSON_HEADERS }), provider, ids };
}

const seconds = () => Math.floor(Date.now() / 1000);

/** The pipeline for one webhook: head, body, plan, then the plan's I/O. */
async function ingest(c, request, env, path, ops) {
  let head = path;
  for (const [name, value] of request.headers) head += "\n" + name + "\n" + value;
  let step = c.answer(c.x.mh_begin(c.text(head), seconds()));
  if (step.refuse) return refused(step.refuse, step.provider);
  const h = step.h;
  try {
    if (step.limit === undefined) step = await reverseDns(c, h, env, ops);
    if (step.refuse) return refused(step.refuse, step.provider);
    if (typeof step.limit !== "number") throw new Error("the ingest module answered the head without a body limit");
    let bad;
    if (step.announced !== null && step.announced <= SMALL_BODY && request.body !== null) {
      // A small announced body in one read (the usual webhook), without readBody's stream.
      let bytes;
      try {
        bytes = new Uint8Array(await request.arrayBuffer());
      } catch {
        bytes = null;
      }
      bad = bytes === null ? UNREADABLE : takeBody(c, h, bytes, step);
    } else {
      bad = await readBody(c, h, request, step);
    }
    if (bad) return refused(bad, step.provider);
    crypto.getRandomValues(c.bytes(c.x.mh_input(16), 16));
    const plan = c.answer(c.x.mh_ingest(h, seconds()));
    if (plan.refuse) return refused(plan.refuse, step.provider);
    // The messages as text now, before any await: nothing later depends on the request's state but the stored bodies.
    for (const e of plan.events) {
      e.sizes = e.messages.map(([, len]) => len);
      e.messages = e.messages.map(([ptr, len]) => decoder.decode(c.bytes(ptr, len)));
    }
    const unavailable = await run(c, h, plan, step.provider, env, ops);
    if (unavailable) return refused(unavailable, step.provider);
    return accepted(plan.fresh ? "accepted" : "duplicate", plan.ids, step.provider);
  } catch (e) {
    // Marked dead before the finally, so mh_end is not called on an instance that trapped.
    failed(c, e);
    throw e;
  } finally {
    // The answer is decided: a trap of another request meanwhile must not change it.
    if (!c.dead) {
      try {
        c.x.mh_end(h);
      } catch (e) {
        failed(c, e);
      }
    }
  }
}

/**
 * Mail-Plus's reverse-DNS check: the core says each step (a KV read of a
 * verdict another isolate cached, or a DoH query), this does it and hands the
 * answer back, until the verdict; then the head's answer.
 */
async function reverseDns(c, h, env, ops) {
  let fetched = false;
  let step = c.answer(c.x.mh_rdns(h, 0, 0, seconds()));
  for (;;) {
    if (step.key !== undefined) {
      let value = null;
      try {
        if (env.DEDUPE) {
          ops.kv_read += 1;
          value = await env.DEDUPE.get(step.key);
        }
      } catch {}
      c.input(encoder.encode(value ?? ""));
      step = c.answer(c.x.mh_rdns(h, 1, value === null ? 0 : 1, seconds()));
    } else if (step.url !== undefined) {
      fetched = true;
      ops.subrequests += 1;
      let answer;
      try {
        const r = await fetch(step.url, { headers: { accept: "application/dns-json" }, signal: AbortSignal.timeout(DOH_TIMEOUT_MS) });
        const body = new Uint8Array(await r.arrayBuffer());
        if (body.length > DOH_MAX_BYTES) throw new Error(`the DoH answer is over ${DOH_MAX_BYTES} bytes`);
        answer = [2, r.status, body];
      } catch (e) {
        // No error message: it may quote the URL, and this text reaches the sender's 503.
        const why = e?.name === "TimeoutError" ? `timed out after ${DOH_TIMEOUT_MS / 1000} s` : `connection error (${e?.name ?? "Error"})`;
        // The name, not the URL: DOH_URL may carry a token.
        log({ kind: "doh_failed", name: step.name, error: why });
        answer = [3, 0, encoder.encode(why)];
      }
      c.input(answer[2]);
      step = c.answer(c.x.mh_rdns(h, answer[0], answer[1], seconds()));
    } else break;
  }
  const verdict = step.rdns;
  if (verdict && fetched) log({ kind: "rdns", ip: verdict.ip, passed: verdict.passed });
  if (verdict?.remember && env.DEDUPE) {
    try {
      ops.kv_write += 1;
      await env.DEDUPE.put(verdict.remember[0], "pass", { expirationTtl: verdict.remember[1] });
    } catch {}
  }
  return step;
}

/**
 * Reads the body into the ingest module's memory, refusing it (413) as soon as
 * it passes the limit, chunked or not, and (400) when it ends short of its
 * announced length. A small announced body is read in one call; any other is
 * read with a BYOB reader into one 64 KiB buffer, each chunk copied into Wasm,
 * so no JavaScript buffer per chunk waits for the collector and a large email
 * costs its size once (BENCHMARKS.md §5). An unauthenticated sender's body only
 * takes memory as its bytes arrive (`reserve`). Returns a refusal, or nothing.
 */
async function readBody(c, h, request, { announced, limit, reserve }) {
  const body = request.body;
  if (body === null) return announced ? SHORT : undefined;
  c.x.mh_reserve(h, Math.min(announced ?? 0, reserve, limit), seconds());
  let reader;
  try {
    reader = body.getReader({ mode: "byob" });
  } catch {
    reader = body.getReader();
  }
  const byob = typeof ReadableStreamBYOBReader !== "undefined" && reader instanceof ReadableStreamBYOBReader;
  let buffer = new ArrayBuffer(READ_CHUNK);
  let len = 0;
  for (;;) {
    let chunk;
    try {
      chunk = byob ? await reader.read(new Uint8Array(buffer, 0, READ_CHUNK)) : await reader.read();
    } catch {
      return UNREADABLE;
    }
    if (chunk.done) break;
    const value = chunk.value;
    if (len + value.length > limit) {
      reader.cancel().catch(() => {});
      return tooLarge(c, limit);
    }
    const ptr = c.x.mh_body(h, len + value.length, seconds());
    if (ptr === 0) {
      reader.cancel().catch(() => {});
      return LOST;
    }
    c.bytes(ptr + len, value.length).set(value);
    len += value.length;
    if (byob) buffer = value.buffer;
  }
  if (announced !== null && len !== announced) return SHORT;
  return undefined;
}

/** A small body read whole: into Wasm, or its refusal. */
function takeBody(c, h, bytes, { announced, limit }) {
  if (bytes.length !== announced) return bytes.length > limit ? tooLarge(c, limit) : SHORT;
  const ptr = c.x.mh_body(h, bytes.length, seconds());
  if (ptr === 0) return LOST;
  c.bytes(ptr, bytes.length).set(bytes);
  return undefined;
}

/** The refusal (413) of a body over `limit` bytes, as the core words it. */
const tooLarge = (c, limit) => c.answer(c.x.mh_too_large(limit)).refuse;

/**
 * The plan's I/O, in the pipeline's order: dedupe reads; for the new events,
 * large events to R2, unrouted ones to the event log, every message on the
 * queue; then their dedupe keys. Returns a refusal (503), or nothing; sets
 * `plan.fresh` when any event was new.
 */
async function run(c, h, plan, provider, env, ops) {
  const kv = env.DEDUPE;
  const fresh = [];
  for (const e of plan.events) {
    let seen = false;
    if (kv) {
      ops.kv_read += 1;
      try {
        seen = (await kv.get(e.key)) !== null;
      } catch (err) {
        log({ kind: "kv_read_failed", id: e.id, error: String(err?.message ?? err) });
      }
    }
    if (!seen) fresh.push(e);
  }
  plan.fresh = fresh.length > 0;
  if (!plan.fresh) return undefined;

  const unavailable = (what, err) => {
    log({ kind: "enqueue_failed", stage: what, error: String(err?.message ?? err) });
    return refusal(503, "unavailable", `could not ${what}; nothing was accepted, please retry`);
  };
  // The body and manifests are the request's in Wasm memory while it is there
  // (forgotten only after 10 idle minutes; a dead instance is never called again).
  const held = () => {
    if (!c.dead && c.x.mh_touch(h, seconds()) === 0) throw new Error("the request's state was forgotten while it waited");
  };
  for (const e of fresh) {
    if (!e.stored) continue;
    try {
      const bucket = env.PAYLOADS;
      if (!bucket) throw new Error("the PAYLOADS binding is missing");
      // Views of Wasm memory: R2 copies them during each call, so no JavaScript buffer of the body's size is made.
      held();
      ops.r2_class_a += 1;
      await bucket.put(e.stored.body, c.bytes(plan.data[0], plan.data[1]));
      held();
      ops.r2_class_a += 1;
      await bucket.put(e.stored.parts, c.bytes(e.stored.manifest[0], e.stored.manifest[1]));
    } catch (err) {
      return unavailable("store the large event", err);
    }
  }
  const unrouted = fresh.filter((e) => e.unrouted);
  if (unrouted.length > 0) {
    try {
      for (const e of unrouted) log({ kind: "unrouted", id: e.id, provider, type: e.type });
      const db = env.DB;
      const results = await db.batch(unrouted.map((e) => db.prepare(plan.unrouted_sql).bind(e.id, provider, e.type, e.unrouted[1], e.unrouted[0], e.unrouted[2])));
      ops.d1_queries += 1;
      for (const r of results) {
        ops.d1_rows_read += r.meta?.rows_read ?? 0;
        ops.d1_rows_written += r.meta?.rows_written ?? 0;
      }
    } catch (err) {
      return unavailable("record the unrouted event", err);
    }
  }
  // Several batches only when the fan-out passes one batch's limits: a
  // failure after the first answers 503, the provider sends again, and the
  // destinations that got it already dedupe on `webhook-id`.
  const [maxCount, maxBytes] = plan.batch;
  const batches = [[]];
  let bytes = 0;
  for (const e of fresh) {
    for (let i = 0; i < e.messages.length; i++) {
      const len = e.sizes[i];
      let batch = batches[batches.length - 1];
      if (batch.length > 0 && (batch.length >= maxCount || bytes + len > maxBytes)) {
        batches.push((batch = []));
        bytes = 0;
      }
      batch.push({ body: e.messages[i], contentType: "text" });
      bytes += len;
      ops.queue_write += e.units[i];
    }
  }
  try {
    for (const batch of batches) {
      // One message (the usual event, one destination) is a plain send.
      if (batch.length === 1) await env.EVENTS.send(batch[0].body, { contentType: "text" });
      else if (batch.length > 1) await env.EVENTS.sendBatch(batch);
    }
  } catch (err) {
    return unavailable("enqueue the event", err);
  }
  // Awaited, not left to waitUntil: a provider's immediate retry must find the key.
  if (kv) {
    const now = String(seconds());
    for (const e of fresh) {
      ops.kv_write += 1;
      try {
        await kv.put(e.key, now, { expirationTtl: plan.ttl });
      } catch (err) {
        log({ kind: "kv_write_failed", id: e.id, error: String(err?.message ?? err) });
      }
    }
  }
  return undefined;
}
