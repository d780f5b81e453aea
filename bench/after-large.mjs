// Do small events cost what they did after a large email? One isolate: the
// workerd process's CPU for 300 small Maileroo events, then a 32 MiB ImprovMX
// email, then 300 small events again. `node bench/after-large.mjs`
import { readdirSync, readFileSync } from "node:fs";
import { startMailhook, signedHeaders } from "../tests/integration/harness.mjs";
import { largeEmail } from "./memory.mjs";

const TICK = 100;
const pids = () => new Set(readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
  try { return readFileSync(`/proc/${p}/stat`, "utf8").includes("(workerd)"); } catch { return false; }
}));
const cpu = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, "utf8"); const x = f.slice(f.lastIndexOf(")") + 2).split(" "); return (Number(x[11]) + Number(x[12])) / TICK; };

const before = pids();
const hook = await startMailhook({ listen: true, consumers: false });
const pid = [...pids()].find((p) => !before.has(p));
let n = 0;
async function small(count) {
  const c0 = cpu(pid);
  for (let i = 0; i < count; i++) {
    const body = JSON.stringify({ event_id: `after-large-${n++}`, event_time: Math.floor(Date.now() / 1000), event_type: "delivered", message_id: "<a@b>" });
    const r = await fetch(`${hook.url}/webhooks/maileroo`, { method: "POST", body, headers: signedHeaders.maileroo(body) });
    await r.text();
  }
  return ((cpu(pid) - c0) * 1000) / count;
}
await small(100); // warm-up
const rounds = [];
for (let round = 0; round < 3; round++) rounds.push(await small(300));
const big = await fetch(`${hook.url}/webhooks/improvmx`, { method: "POST", body: largeEmail(33_400_000, "after"), headers: { "cf-connecting-ip": "15.237.103.194" } });
console.error(`large email: HTTP ${big.status}`);
const after = [];
for (let round = 0; round < 3; round++) after.push(await small(300));
const wasm = hook.logs.filter((l) => l.includes('"kind":"request"')).map((l) => JSON.parse(l).wasm_kib).pop();
console.log(JSON.stringify({ before: rounds, after, wasm_kib_after: wasm }));
await hook.dispose();
