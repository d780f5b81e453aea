// Attachments by link: what a linked event costs in R2 operations, and the isolate's peak memory while the Worker
// serves a 25 MB attachment by its link (streamed from R2, unescaped and base64-decoded a chunk at a time).
//
// One ImprovMX email with one attachment of 25 MB (about 33 MB of JSON, so MAX_BODY_BYTES is raised to 50 MB) goes to
// a destination with `attachments = "link"` on 127.0.0.1; the operations are counted by the Worker itself (the `ops` of
// its log lines: the request that took the email, the consumer's batch, the request that served the link). Then a
// fresh Worker instance (KV, R2 and D1 kept in a folder) serves the link while workerd's inspector samples the isolate,
// as bench/memory.mjs does for ingest and delivery. Prints one JSON line.
//
// `node bench/links.mjs [MB]` (the Worker built first: `bash scripts/build.sh`); `npm run bench` runs it for 25 MB
// and writes section 5c of BENCHMARKS.md (`linksMarkdown`).
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort, startMailhook, startOrigin, waitFor } from "../tests/integration/harness.mjs";
import { inspector, wasmKib } from "./memory.mjs";

process.env.WRANGLER_SEND_METRICS = "false";
const PORT = 9341;
const MB = 1_000_000;
const KEY = "bench-link-signing-key-0123456789abcdef";
const whsec = "whsec_" + Buffer.from("bench-links-destination-key").toString("base64");

const lines = (logs) => logs.map((l) => { try { return JSON.parse(l); } catch { return null; } }).filter(Boolean);
const sumOps = (ls) => ls.reduce((o, l) => {
  for (const [k, v] of Object.entries(l.ops ?? {})) o[k] = (o[k] ?? 0) + v;
  return o;
}, {});

/** Accepts, delivers and serves one email with a `size`-byte attachment by link; its operations and the serving peak. */
export async function measureLinks(size) {
  const bytes = randomBytes(size);
  const body = JSON.stringify({
    headers: { "Delivered-To": "desk@example.org" },
    to: [{ name: "Desk", email: "desk@example.org" }],
    from: { name: "Sender", email: "sender@example.net" },
    subject: "a large attachment",
    "message-id": `<links-bench-${Date.now()}@example.net>`,
    timestamp: Math.floor(Date.now() / 1000),
    text: "see attached",
    attachments: [{ type: "application/octet-stream", name: "big.bin", content: bytes.toString("base64") }],
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), "mailhook-links-"));
  const origin = await startOrigin({ secret: whsec });
  const port = await freePort();
  const options = (inspectorPort) => ({
    listen: true,
    port,
    persist: dir,
    ...(inspectorPort ? { inspectorPort } : {}),
    vars: {
      ORIGIN_URL: undefined,
      MAX_BODY_BYTES: String(50 * MB),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      DESTINATIONS: [{ name: "desk", url: origin.url, attachments: "link" }],
    },
    secrets: { DESTINATION_DESK_SIGNING_SECRET: whsec, LINK_SIGNING_KEY: KEY },
  });
  try {
    // Accept and deliver: the operations of the linked event.
    const a = await startMailhook(options());
    let url, accepted, delivered, event;
    try {
      const r = await fetch(`${a.url}/webhooks/improvmx`, { method: "POST", body, headers: { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" } });
      const [id] = (await r.json()).ids;
      const d = await waitFor(() => origin.deliveries.find((x) => x.id === id), { ms: 120_000, what: "the linked delivery" });
      event = d.body.length;
      url = d.event.data.inbound.attachments[0].url;
      await waitFor(() => lines(a.logs).some((l) => l.kind === "batch" && l.ops?.d1_queries), { what: "the batch's log line" });
      accepted = sumOps(lines(a.logs).filter((l) => l.kind === "request" && l.path === "/webhooks/improvmx"));
      delivered = sumOps(lines(a.logs).filter((l) => l.kind === "batch"));
    } finally {
      await a.dispose();
    }
    // Serve the link from a fresh isolate, sampling its memory.
    const b = await startMailhook({ ...options(PORT), consumers: false });
    try {
      await b.request("/healthz");
      const insp = await inspector();
      const rest = await insp.heap();
      const started = Date.now();
      const served = (async () => {
        const res = await fetch(url);
        const hash = createHash("sha256");
        let n = 0;
        for await (const chunk of res.body) {
          hash.update(chunk);
          n += chunk.length;
        }
        return { status: res.status, n, sha256: hash.digest("hex") };
      })();
      const peak = await insp.sampleWhile(served);
      const ms = Date.now() - started;
      insp.close();
      const s = await served;
      await waitFor(() => lines(b.logs).some((l) => l.kind === "request" && l.path === "/attachments/"), { what: "the link's log line" });
      const line = lines(b.logs).filter((l) => l.kind === "request" && l.path === "/attachments/").pop();
      const wasm = wasmKib(b.logs, "request") * 1024;
      return {
        attachment: size,
        email: body.length,
        event,
        accepted: { r2_class_a: accepted.r2_class_a ?? 0, r2_class_b: accepted.r2_class_b ?? 0 },
        delivered: { r2_class_a: delivered.r2_class_a ?? 0, r2_class_b: delivered.r2_class_b ?? 0 },
        served: { r2_class_a: line.ops.r2_class_a, r2_class_b: line.ops.r2_class_b, status: s.status, bytes: s.n, exact: s.sha256 === createHash("sha256").update(bytes).digest("hex"), ms },
        memory: { rest: rest.usedSize + (rest.backingStorageSize ?? 0) + wasm, peak: peak.used + peak.backing + wasm, jsHeap: peak.used, arrayBuffers: peak.backing, wasm, samples: peak.samples },
      };
    } finally {
      await b.dispose();
    }
  } finally {
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const mib = (n) => (n / 1024 / 1024).toFixed(2);

/** Section 5c of BENCHMARKS.md. */
export function linksMarkdown(m) {
  const ops = (o) => `${o.r2_class_a} class A, ${o.r2_class_b} class B`;
  return `### 5c. Attachments by link: R2 operations, and serving a ${m.attachment / MB} MB attachment

One ImprovMX email with one ${m.attachment / MB} MB attachment (${(m.email / MB).toFixed(1)} MB of JSON) to a destination with
\`attachments = "link"\`, measured by \`bench/links.mjs\`: the operations are the Worker's own counts (the \`ops\` of its
log lines), and the peak is read as in section 5, in a fresh isolate that serves the link while the client reads it.

| step | R2 operations | |
|---|---|---|
| accepted (the body and its manifest written) | ${ops(m.accepted)} | as for any stored event |
| delivered as a ${m.event.toLocaleString("en-US")}-byte linked event | ${ops(m.delivered)} | the manifest read; the body never (inline delivery of the same event reads it twice: to sign, then to send) |
| each link fetched | ${ops(m.served)} | one ranged read, streamed |

A linked event with one attachment, fetched once: ${m.accepted.r2_class_a + m.delivered.r2_class_a + m.served.r2_class_a} class A and ${m.accepted.r2_class_b + m.delivered.r2_class_b + m.served.r2_class_b} class B operations,
$${((m.accepted.r2_class_a + m.delivered.r2_class_a + m.served.r2_class_a) * 4.5 + (m.accepted.r2_class_b + m.delivered.r2_class_b + m.served.r2_class_b) * 0.36).toFixed(2)} per million events at R2's list prices ($4.50 and $0.36 per million operations); a small event with attachments for such a
destination is kept in R2 for the links (two writes, about $9 per million), which it would not be otherwise.

Serving the ${m.attachment / MB} MB attachment (${m.served.bytes === m.attachment && m.served.exact ? "every byte exact" : "**bytes differ**"}, ${m.served.ms} ms on 127.0.0.1): the isolate's peak was
**${mib(m.memory.peak)} MiB** (JS heap ${mib(m.memory.jsHeap)}, array buffers ${mib(m.memory.arrayBuffers)}, Wasm ${mib(m.memory.wasm)}; ${mib(m.memory.rest)} MiB at rest before,
${m.memory.samples} samples): the attachment is never whole in memory, and Wasm memory did not grow.
`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await measureLinks(Number(process.argv[2] ?? 25) * MB)));
}
