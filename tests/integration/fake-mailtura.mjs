// A local stand-in for Mailtura's webhook API, as ../shared/providers/mailtura.txt documents it: create, list,
// update, delete and test webhooks, with a Bearer API key and X-Tenant-ID. Its test event is signed as Mailtura
// signs (X-Mailtura-Signature: hex HMAC-SHA256 of the raw body with the webhook's secret) and posted to the URL.
import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";

/** `onTest(webhook)` runs before a test event is sent (the tests apply the stored secret to the local Worker there). */
export async function startMailtura({ key, tenant, onTest = async () => {} }) {
  const webhooks = [];
  const calls = [];
  // `listShape`: "data" ({ data: [...] }), or "items", a shape connect does not know (the list's is not documented).
  const me = { webhooks, calls, listShape: "data" };
  const server = http.createServer(async (req, res) => {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    calls.push({ method: req.method, url: req.url, body: raw });
    const send = (status, body) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    if (req.headers.authorization !== `Bearer ${key}`) return send(401, { error: "Invalid API key" });
    if (req.headers["x-tenant-id"] !== tenant) return send(403, { error: "Unknown tenant" });
    let body = {};
    try {
      body = raw ? JSON.parse(raw) : {};
    } catch {
      return send(400, { error: "Invalid JSON" });
    }
    const [, id, action] = req.url.match(/^\/api\/v1\/webhooks(?:\/([^/]+))?(?:\/(test))?$/) ?? [];
    const hook = id && webhooks.find((w) => w.id === id);
    if (id && !hook) return send(404, { error: "Webhook not found" });
    if (req.method === "POST" && !id) {
      const url = new URL(body.url ?? "about:blank");
      // HTTPS only, as documented; the local Worker on 127.0.0.1 is the stand-in's one exception.
      if (url.protocol !== "https:" && url.hostname !== "127.0.0.1") return send(422, { error: "url must be HTTPS" });
      const w = { id: `wh_${randomBytes(4).toString("hex")}`, url: body.url, events: body.events ?? [], enabled: body.enabled ?? true, secret: body.secret };
      webhooks.push(w);
      const { secret: _, ...shown } = w;
      return send(201, shown);
    }
    if (req.method === "GET" && !id) return send(200, { [me.listShape]: webhooks.map(({ secret: _, ...w }) => w) });
    if (req.method === "PATCH" && hook && !action) {
      Object.assign(hook, body);
      return send(200, { id: hook.id, url: hook.url, events: hook.events, enabled: hook.enabled });
    }
    if (req.method === "DELETE" && hook && !action) {
      webhooks.splice(webhooks.indexOf(hook), 1);
      return send(200, { deleted: true });
    }
    if (req.method === "POST" && action === "test") {
      await onTest(hook);
      const event = JSON.stringify({
        id: `evt_test_${randomBytes(6).toString("hex")}`,
        type: body.eventType ?? "email.delivered",
        timestamp: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
        data: { emailId: "msg_test", recipient: "test@example.com", subject: "Mailtura test event", deliveredAt: new Date().toISOString() },
      });
      const signature = createHmac("sha256", hook.secret ?? "").update(event).digest("hex");
      const r = await fetch(hook.url, { method: "POST", headers: { "content-type": "application/json", "x-mailtura-signature": signature }, body: event });
      return send(200, { success: true, status: r.status });
    }
    send(404, { error: "Not found" });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return Object.assign(me, {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((r) => server.close(r)),
  });
}
