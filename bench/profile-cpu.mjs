// A V8 CPU profile of mailhook under the bench's Maileroo load, through
// workerd's inspector: prints the functions with the most self time.
// `node bench/profile-cpu.mjs [worker.js]` (build without stripping names for Wasm
// function names: MAILHOOK_KEEP_NAMES=1 bash scripts/build.sh).
import WebSocket from "ws";
import { startMailhook } from "../tests/integration/harness.mjs";
import { load as loadWith, startBaseline } from "./load.mjs";

const PORT = 9329;
// `node bench/profile-cpu.mjs worker.js` profiles one of bench/baseline-js/ instead, for comparison.
const baseline = process.argv[2];
const hook = baseline ? await startBaseline(baseline, { inspectorPort: PORT }) : await startMailhook({ listen: true, consumers: false, inspectorPort: PORT });
const targets = await (await fetch(`http://127.0.0.1:${PORT}/json`)).json();
const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((r) => ws.on("open", r));
let id = 0;
const pending = new Map();
ws.on("message", (m) => { const msg = JSON.parse(m); pending.get(msg.id)?.(msg.result); });
const send = (method, params = {}) => new Promise((r) => { const i = ++id; pending.set(i, r); ws.send(JSON.stringify({ id: i, method, params })); });

const load = () => loadWith(hook.url, { duration: 5 });
await load();
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });
await send("Profiler.start");
const res = await load();
const { profile } = await send("Profiler.stop");
const dt = (profile.endTime - profile.startTime) / profile.samples.length;
const self = new Map();
const idle = new Set(profile.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id));
for (const n of profile.nodes) {
  if (idle.has(n.id)) continue;
  const f = n.callFrame;
  const key = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber}`;
  self.set(key, (self.get(key) ?? 0) + n.hitCount * dt);
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
console.log(`${res.requests.total} requests; sampled ${(total / 1000).toFixed(0)} ms in the isolate (idle excluded), ${((total / res.requests.total)).toFixed(1)} µs per request`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 30))) {
  console.log(`${(v / 1000).toFixed(1).padStart(8)} ms ${((v / total) * 100).toFixed(1).padStart(5)} %  ${k.slice(0, 110)}`);
}
ws.close();
await hook.dispose();
process.exit(0);
