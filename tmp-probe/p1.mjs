import { createHash, createHmac, randomBytes } from "node:crypto";
import { freePort, startMailhook, startOrigin, waitFor, sleep } from "../tests/integration/harness.mjs";

const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const IMPROVMX = { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" };
const whsec = (l) => "whsec_" + Buffer.from(`integration-test-${l}-key`).toString("base64");
const LINK_KEY = "k-new-aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LIMIT = 1024 * 1024;
const out = (...a) => console.log(...a);

function emailRaw(label, attachmentsJson, to, extra = "") {
  // attachmentsJson: raw JSON text for the attachments array
  return `{"headers":{"Delivered-To":"${to}"},"to":[{"name":"Desk","email":"${to}"}],"from":{"name":"S","email":"s@example.net"},` +
    `"subject":"${label}","message-id":"<p-${label}-${randomBytes(4).toString("hex")}@example.net>","timestamp":${Math.floor(Date.now() / 1000)},` +
    `"text":"t","html":"<p>h</p>"${extra},"inlines":[],"attachments":${attachmentsJson}}`;
}

const desk = await startOrigin({ secret: whsec("desk") });
const inl = await startOrigin({ secret: whsec("inl") });
const small = await startOrigin({ secret: whsec("small"), respond: (d) => (Buffer.byteLength(d.body) > LIMIT ? 413 : 204) });
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const hook = await startMailhook({
  listen: true, port,
  vars: {
    ORIGIN_URL: undefined, PUBLIC_URL: base + "/", ORIGIN_TIMEOUT_SECONDS: "60",
    DESTINATIONS: [
      { name: "desk", url: desk.url, attachments: "LINK", filter: { recipient_tags: ["desk", "both"] } },
      { name: "inl", url: inl.url, filter: { recipient_tags: ["inl", "both"] } },
      { name: "small", url: small.url, max_body_bytes: String(LIMIT), filter: { recipient_tags: ["big"] } },
    ],
  },
  secrets: { DESTINATION_DESK_SIGNING_SECRET: whsec("desk"), DESTINATION_INL_SIGNING_SECRET: whsec("inl"), DESTINATION_SMALL_SIGNING_SECRET: whsec("small"), LINK_SIGNING_KEY: ` ${LINK_KEY} , old-key` },
});
out("healthz", (await hook.request("/healthz")).status);

async function send(label, attJson, tag, extra) {
  const body = emailRaw(label, attJson, `support+${tag}@example.org`, extra);
  const r = await hook.post("improvmx", body, IMPROVMX);
  if (r.status !== 200) { out(label, "POST", r.status, r.text.slice(0, 300)); return null; }
  return r.json.ids[0];
}
async function got(origin, id, what) {
  return waitFor(() => origin.deliveries.find((d) => d.id === id), { ms: 30000, what });
}

// 1. odd escapes / whitespace / = in middle / invalid chars in a large base64 literal
const data = randomBytes(3000);
const b64 = data.toString("base64");
const variants = {
  plain: JSON.stringify(b64),
  slashEsc: JSON.stringify(b64).replace(/\//g, "\\/"),
  u0041: JSON.stringify(b64).replace(/A/g, "\\u0041"),
  newlines: JSON.stringify(b64.replace(/(.{76})/g, "$1\r\n")),
  eqMiddle: JSON.stringify(b64.slice(0, 100) + "==" + b64.slice(100)),
  garbage: JSON.stringify(b64.slice(0, 200) + "*!?é😀" + b64.slice(200)),
  surrogate: '"' + b64.slice(0, 500) + "\\ud83d\\ude00" + b64.slice(500) + '"',
  tailGroup: JSON.stringify(b64.slice(0, b64.length - 1)),
  pad3: JSON.stringify(b64 + "===="),
  urlsafe: JSON.stringify(b64.replace(/\+/g, "-").replace(/\//g, "_")),
};
for (const [label, lit] of Object.entries(variants)) {
  const id = await send(label, `[{"type":"application/octet-stream","name":"${label}.bin","content":${lit}}]`, "both");
  if (!id) continue;
  const d = await got(desk, id, label), i = await got(inl, id, label);
  const a = d.event.data.inbound.attachments[0], ai = i.event.data.inbound.attachments[0];
  const res = await fetch(a.url);
  const bytes = Buffer.from(await res.arrayBuffer());
  const inlineDecoded = Buffer.from(ai.content_base64, "base64");
  out(label, "status", res.status, "served", bytes.length, "size", a.size, "sha-ok", sha256(bytes) === a.sha256,
    "inline.size", ai.size, "inline.sha==", ai.sha256 === a.sha256, "node-decoded-inline", inlineDecoded.length, "nodeMatchesServed", sha256(inlineDecoded) === sha256(bytes), "matchesOrig", sha256(bytes) === sha256(data));
}
// keep a good link for tamper tests
const goodId = await send("good", `[{"type":"text/html","name":"x.html","content":${JSON.stringify(data.toString("base64"))}}]`, "desk");
const good = (await got(desk, goodId, "good")).event;
out("key order", Object.keys(good), Object.keys(good.data).join(","));
const gurl = good.data.inbound.attachments[0].url;
out("good url", gurl);
const g = await fetch(gurl);
out("good", g.status, [...g.headers].map((h) => h.join(": ")).join(" | "));
await g.arrayBuffer();
globalThis.ctx = { hook, base, gurl, send, got, desk, inl, small, data, sha256, out, LINK_KEY };
const mod = await import(process.argv[2] ?? "./p1b.mjs").catch((e) => out("no p1b", e.message));
if (mod?.default) await mod.default(globalThis.ctx).catch((e) => out("ERR", e));
await hook.dispose(); await desk.close(); await inl.close(); await small.close();
process.exit(0);
