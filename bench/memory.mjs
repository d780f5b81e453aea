// Peak isolate memory of one large ImprovMX email, measured in workerd, for
// ingest and for the consumer's delivery of the same event, each in an isolate
// of its own (a fresh Worker instance; KV, R2 and D1 kept in a folder between them).
//
// How: workerd's V8 inspector (the user Worker's isolate) is asked
// `Runtime.getHeapUsage` back to back while the request runs, and the largest
// JS heap (`usedSize`) and array-buffer backing store (`backingStorageSize`) seen
// are kept; the Wasm linear memory is read by the Worker itself
// (`memory.size`, logged as `wasm_kib`): it only grows, so its value after the
// phase is the phase's peak. The isolate's peak is their sum, less any Wasm
// memory the backing store already counts (see `wasmInBacking`).
//
// `node bench/memory.mjs [MB ...]` prints JSON lines; `npm run bench` runs it
// for 1, 10, 25 and 32 MB and writes the table into BENCHMARKS.md.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { fixture, startMailhook, startOrigin, waitFor } from "../tests/integration/harness.mjs";

const PORT = 9341;
const MB = 1_000_000;

/** An ImprovMX email of about `total` bytes: four attachments, an inline image, text and html. */
export function largeEmail(total, label) {
  const raw = Math.floor((total - 300_000) * 0.75); // base64 grows by 4/3
  const sizes = [0.4, 0.3, 0.2, 0.1].map((f) => Math.floor(raw * f));
  return JSON.stringify({
    headers: { "Delivered-To": "big@example.org", "Received-SPF": ["pass (x) client-ip=192.0.2.9;"] },
    to: [{ name: "Big", email: "big@example.org" }],
    from: { name: "Sender", email: "sender@example.net" },
    subject: `memory ${label}`,
    "message-id": `<memory-${label}-${Date.now()}@example.net>`,
    timestamp: Math.floor(Date.now() / 1000),
    text: "see attached\n".repeat(2000),
    html: "<p>see attached</p>".repeat(2000),
    inlines: [{ type: "image/png", name: "logo.png", content: randomBytes(150_000).toString("base64"), cid: "logo" }],
    attachments: sizes.map((n, i) => ({ type: "application/octet-stream", name: `part-${i}.bin`, content: randomBytes(n).toString("base64") })),
  });
}

/** The user Worker's isolate through workerd's inspector. */
export async function inspector() {
  const targets = await (await fetch(`http://127.0.0.1:${PORT}/json`)).json();
  const target = targets.find((t) => t.title === "workerd: worker core:user:") ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((r) => ws.on("open", r));
  let id = 0;
  const pending = new Map();
  ws.on("message", (m) => {
    const msg = JSON.parse(m);
    pending.get(msg.id)?.(msg.result);
    pending.delete(msg.id);
  });
  const send = (method, params = {}) => new Promise((r) => { const i = ++id; pending.set(i, r); ws.send(JSON.stringify({ id: i, method, params })); });
  return {
    heap: () => send("Runtime.getHeapUsage"),
    /** Samples the heap until `done` settles; resolves with the peaks and the sample count. */
    async sampleWhile(done) {
      let finished = false;
      done.finally(() => (finished = true));
      const peak = { used: 0, backing: 0, sum: 0, samples: 0 };
      while (!finished) {
        const h = await send("Runtime.getHeapUsage");
        peak.used = Math.max(peak.used, h.usedSize);
        peak.backing = Math.max(peak.backing, h.backingStorageSize ?? 0);
        peak.sum = Math.max(peak.sum, h.usedSize + (h.backingStorageSize ?? 0));
        peak.samples += 1;
      }
      await done;
      return peak;
    },
    close: () => ws.close(),
  };
}

export const wasmKib = (logs, kind) =>
  logs.map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter((l) => l?.kind === kind && l.wasm_kib).map((l) => l.wasm_kib).pop() ?? 0;

/** Measures ingest and delivery of one email of about `total` bytes. */
export async function measure(total, { deliver: withDelivery = true } = {}) {
  const body = largeEmail(total, `${Math.round(total / MB)}MB`);
  const dir = mkdtempSync(path.join(os.tmpdir(), "mailhook-memory-"));
  const origin = await startOrigin();
  const headers = { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" };
  try {
    // Ingest, in an isolate that has only seen one small request.
    const a = await startMailhook({ listen: true, consumers: false, inspectorPort: PORT, persist: dir, vars: { ORIGIN_URL: origin.url } });
    let id, ingest;
    try {
      await a.post("improvmx", fixture("improvmx", "sample"), headers);
      const insp = await inspector();
      const before = { heap: await insp.heap(), wasm: wasmKib(a.logs, "request") };
      const sent = fetch(`${a.url}/webhooks/improvmx`, { method: "POST", body, headers }).then((r) => r.json());
      const peak = await insp.sampleWhile(sent);
      id = (await sent).ids[0];
      await new Promise((r) => setTimeout(r, 500));
      const after = await insp.heap();
      insp.close();
      ingest = { before, peak, after, wasm: wasmKib(a.logs, "request") };
    } finally {
      await a.dispose();
    }
    if (!withDelivery) return { email: body.length, ingest };
    // Delivery of the stored event by a fresh isolate: the event log row, then a replay.
    const b = await startMailhook({ listen: true, inspectorPort: PORT, persist: dir, vars: { ORIGIN_URL: origin.url, ORIGIN_TIMEOUT_SECONDS: "120" } });
    let deliver;
    try {
      const stored = (await (await b.r2()).list({ prefix: `events/${id}.` })).objects.map((o) => o.key);
      const r2Key = stored.find((k) => k.endsWith(".parts"));
      const envelope = { id, provider: "improvmx", type: "email.received", attempt: 0, received_at: Math.floor(Date.now() / 1000), r2_key: r2Key };
      const db = await b.db();
      await db
        .prepare("INSERT OR REPLACE INTO events (id, provider, type, received_at, status, attempts, payload_ref, envelope, updated_at) VALUES (?1, 'improvmx', 'email.received', ?2, 'dead', 1, ?3, ?4, ?2)")
        .bind(id, envelope.received_at - 10, envelope.r2_key, JSON.stringify(envelope))
        .run();
      await b.request("/healthz");
      const insp = await inspector();
      const before = { heap: await insp.heap(), wasm: wasmKib(b.logs, "request") };
      const delivered = b.admin(`/admin/events/${id}/replay`, { method: "POST" })
        .then(() => waitFor(() => origin.deliveries.find((d) => d.id === id), { ms: 240_000, what: "the delivery" }))
        .then((d) => waitFor(() => wasmKib(b.logs, "delivery_attempt") && d, { what: "the delivery's log line" }));
      const peak = await insp.sampleWhile(delivered);
      insp.close();
      const d = await delivered;
      deliver = { before, peak, wasm: wasmKib(b.logs, "delivery_attempt"), bytes: d.body.length };
    } finally {
      await b.dispose();
    }
    return { email: body.length, ingest, deliver };
  } finally {
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The isolate's peak for one phase, in bytes: JS heap + array buffers + Wasm linear memory. */
export function isolatePeak(phase) {
  return phase.peak.used + phase.peak.backing + phase.wasm * 1024;
}

/** The same isolate at rest, just before the phase: Wasm memory, JS heap and array buffers. */
export function atRest(phase) {
  return phase.before.heap.usedSize + (phase.before.heap.backingStorageSize ?? 0) + phase.before.wasm * 1024;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const sizes = process.argv.slice(2).map(Number);
  for (const mb of sizes.length ? sizes : [1, 10, 25, 32]) {
    const m = await measure(mb === 32 ? 33_400_000 : mb * MB, { deliver: !process.env.INGEST_ONLY });
    console.log(JSON.stringify({ ...m, ingestPeak: isolatePeak(m.ingest), deliverPeak: m.deliver && isolatePeak(m.deliver) }));
  }
}
