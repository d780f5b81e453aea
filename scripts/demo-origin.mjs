// A demo origin for local runs: verifies each delivery's Standard Webhooks
// signature with ORIGIN_SIGNING_SECRET (from .dev.vars) and prints the event;
// prints the alerts posted to /alerts (ALERT_URL in .dev.vars).
// Run alone with `npm run demo-origin`; `npm start` runs it for you.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

export function readDevVars(file = ".dev.vars") {
  const vars = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const m = line.match(/^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/);
    if (m) vars[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return vars;
}

export function startDemoOrigin({ port = 8789, host = "127.0.0.1", secret }) {
  // During rotation ORIGIN_SIGNING_SECRET holds several keys; the newest is last.
  const keys = secret.split(",").map((s) => s.trim()).filter(Boolean);
  const verifiers = keys.map((k) => new Webhook(k));
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      if (req.url === "/alerts") {
        // ALERT_URL of .dev.vars: what a Slack channel would show.
        let text = body;
        try { text = JSON.parse(body).text; } catch {}
        console.log(`[alert ${new Date().toISOString()}]\n${text}`);
        res.writeHead(204).end();
        return;
      }
      const event = verifiers.map((v) => { try { return v.verify(body, headers); } catch { return undefined; } }).find(Boolean);
      const stamp = new Date().toISOString();
      if (!event) {
        console.log(`[origin ${stamp}] REFUSED a delivery with an invalid signature (webhook-id ${headers["webhook-id"]})`);
        res.writeHead(401).end("invalid signature");
        return;
      }
      console.log(`[origin ${stamp}] verified ${event.type} ${headers["webhook-id"]}`);
      console.log(JSON.stringify(event, null, 2));
      res.writeHead(204).end();
    });
  });
  server.listen(port, host, () => console.log(`[origin] listening on http://${host}:${port}/ (verifies Standard Webhooks signatures)`));
  return server;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const secret = process.env.ORIGIN_SIGNING_SECRET ?? readDevVars().ORIGIN_SIGNING_SECRET;
  if (!secret) {
    console.error("ORIGIN_SIGNING_SECRET is not set in .dev.vars or the environment; copy .dev.vars.example to .dev.vars");
    process.exit(1);
  }
  startDemoOrigin({ port: Number(process.env.PORT ?? 8789), secret });
}
