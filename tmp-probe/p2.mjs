import { createHash, randomBytes } from "node:crypto";
import { freePort, startMailhook, startOrigin, waitFor } from "../tests/integration/harness.mjs";
const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const whsec = (l) => "whsec_" + Buffer.from(`integration-test-${l}-key`).toString("base64");
const out = (...a) => console.log(...a);
const desk = await startOrigin({ secret: whsec("desk") });
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const hook = await startMailhook({
  listen: true, port,
  vars: { ORIGIN_URL: undefined, PUBLIC_URL: base.toUpperCase().replace("HTTP://", "HTTP://") + "/mailhook/", DESTINATIONS: [{ name: "desk", url: desk.url, attachments: "link" }] },
  secrets: { DESTINATION_DESK_SIGNING_SECRET: whsec("desk"), LINK_SIGNING_KEY: "a,b" },
});
out("healthz", (await hook.request("/healthz")).status, (await hook.request("/healthz")).text.slice(0, 300));
const data = randomBytes(5000);
const qp = Buffer.from("hello=world\r\n<script>alert(1)</script>\r\n".repeat(50));
const b64 = data.toString("base64").replace(/(.{76})/g, "$1\r\n");
const mail = [
  "From: a@example.net", "To: support@mailhook.test", "Subject: er", `Message-ID: <er-${randomBytes(4).toString("hex")}@x>`, "MIME-Version: 1.0",
  'Content-Type: multipart/mixed; boundary="BB"', "", "--BB", "Content-Type: text/plain", "", "body", "--BB",
  'Content-Type: application/octet-stream; name="d.bin"', "Content-Transfer-Encoding: base64", 'Content-Disposition: attachment; filename="d.bin"', "", b64, "--BB",
  "Content-Type: text/html; charset=utf-8", "Content-Transfer-Encoding: quoted-printable", "Content-Disposition: attachment; filename*=UTF-8''ev%0D%0Ail%22.html", "", qp.toString().replace(/=/g, "=3D"), "--BB",
  'Content-Type: application/octet-stream; name="=?UTF-8?B?' + Buffer.from(". .").toString("base64") + '?="', "Content-Transfer-Encoding: base64", "", b64, "--BB--", "",
].join("\r\n");
const r = await hook.email(Buffer.from(mail), { to: "support@mailhook.test" });
out("email", r.status, r.text.slice(0, 200));
const d = await waitFor(() => desk.deliveries[0], { ms: 20000, what: "er delivery" });
out("raw present", "raw" in d.event.data);
for (const a of d.event.data.inbound.attachments) {
  out("att", JSON.stringify(a.filename), a.size, a.url?.slice(0, 90));
  if (!a.url) continue;
  for (const url of [a.url, a.url.replace(/\/mailhook\//i, "/")]) {
    const res = await fetch(url);
    const b = Buffer.from(await res.arrayBuffer());
    out("  fetch", url === a.url ? "as given" : "path stripped", res.status, b.length, sha256(b) === a.sha256, res.headers.get("content-disposition"));
  }
}
out("orig d.bin sha", sha256(data) === d.event.data.inbound.attachments[0].sha256, "qp sha", sha256(qp) === d.event.data.inbound.attachments[1]?.sha256);
await hook.dispose(); await desk.close(); process.exit(0);
