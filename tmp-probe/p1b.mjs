import { randomBytes, createHmac } from "node:crypto";
import { execFileSync } from "node:child_process";
export default async function ({ hook, base, gurl, send, got, desk, small, sha256, out, LINK_KEY }) {
  // off-literal signed link via curl
  const u = new URL(gurl);
  const [start, end] = u.searchParams.get("r").split("-").map(Number);
  const L = { object: u.searchParams.get("o"), start: start + 1, end, expires: Number(u.searchParams.get("x")), name: "x.html" };
  const s = createHmac("sha256", LINK_KEY).update(JSON.stringify(["mailhook attachment link 1", L.object, L.start, L.end, L.expires, L.name])).digest("hex");
  const link = `${base}/attachments/x.html?o=${encodeURIComponent(L.object)}&r=${L.start}-${L.end}&x=${L.expires}&s=${s}`;
  try { out("curl off-literal", execFileSync("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", link], { stdio: ["ignore", "pipe", "pipe"] }).toString()); }
  catch (e) { out("curl off-literal failed", e.status, String(e.stderr), String(e.stdout)); }
  const L2 = { ...L, start: start, end: end - 1 }; // cut before closing quote
  const s2 = createHmac("sha256", LINK_KEY).update(JSON.stringify(["mailhook attachment link 1", L2.object, L2.start, L2.end, L2.expires, L2.name])).digest("hex");
  const link2 = `${base}/attachments/x.html?o=${encodeURIComponent(L2.object)}&r=${L2.start}-${L2.end}&x=${L2.expires}&s=${s2}`;
  try { out("curl no-closing-quote", execFileSync("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", link2], { stdio: ["ignore", "pipe", "pipe"] }).toString()); }
  catch (e) { out("curl no-closing-quote failed", e.status, String(e.stderr), String(e.stdout)); }

  // (a) big html, no attachments, to max_body_bytes 1 MiB destination
  const html = JSON.stringify("<p>" + "y".repeat(700_000) + "</p>");
  let id = await send("bightml", "[]", "big", `,"x-html":0`.replace(`,"x-html":0`, "") );
  // send() puts html "<p>h</p>"; craft manually instead
  const body = `{"headers":{"Delivered-To":"support+big@example.org"},"to":[{"name":"D","email":"support+big@example.org"}],"from":{"name":"S","email":"s@example.net"},"subject":"bightml","message-id":"<bh-${randomBytes(4).toString("hex")}@x>","timestamp":${Math.floor(Date.now() / 1000)},"text":"t","html":${html},"inlines":[],"attachments":[]}`;
  let r = await hook.post("improvmx", body, { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" });
  id = r.json.ids[0];
  await new Promise((res) => setTimeout(res, 12000));
  const att = small.attempts.filter((d) => d.id === id);
  out("bightml attempts", att.length, "sizes", att.map((d) => Buffer.byteLength(d.body)), "delivered", small.deliveries.some((d) => d.id === id), "has raw", att[0] && "raw" in att[0].event.data);
  out("dead?", (await hook.deadLetters()).filter((x) => x.id === id).map((x) => x.status));
  out("logs", hook.logs.filter((l) => l.includes(id) && /link/.test(l)).slice(0, 3).join("\n"));

  // (b) many sub-1KB attachments + 600 KB html -> over 1MiB
  const atts = Array.from({ length: 600 }, (_, i) => ({ type: "application/octet-stream", name: `s${i}.bin`, content: randomBytes(700).toString("base64") }));
  const body2 = body.replace(/"bh-[^"]+"/, `"<bh2-${randomBytes(4).toString("hex")}@x>"`).replace('"html":' + html, '"html":' + JSON.stringify("z".repeat(100_000))).replace('"attachments":[]', '"attachments":' + JSON.stringify(atts));
  r = await hook.post("improvmx", body2, { "content-type": "application/json", "cf-connecting-ip": "15.237.103.194" });
  out("small-atts POST", r.status, Buffer.byteLength(body2));
  id = r.json?.ids?.[0];
  await new Promise((res) => setTimeout(res, 12000));
  const att2 = small.attempts.filter((d) => d.id === id);
  out("small-atts attempts", att2.length, "sizes", att2.map((d) => Buffer.byteLength(d.body)), "delivered", small.deliveries.some((d) => d.id === id), "linked count", att2[0]?.event.data.inbound.attachments.filter((a) => a.url).length);

  // (d) 0 attachments to link destination
  const before = hook.logs.length;
  id = await send("noatt", "[]", "desk");
  const ev = (await got(desk, id, "noatt")).event;
  out("noatt raw present", "raw" in ev.data, hook.logs.slice(before).filter((l) => l.includes("links_unavailable")).length, "links_unavailable logs");
  // (e) attachments with null/missing content
  id = await send("nullc", JSON.stringify([{ name: "a.bin", type: "x/y" }, { name: "b.bin", content: null }]), "desk");
  const ev2 = id && (await got(desk, id, "nullc")).event;
  out("null content", JSON.stringify(ev2?.data.inbound.attachments));
}
