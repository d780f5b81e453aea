// Start-up cost of the webhook path, for bench/run.mjs (§2):
//   - the Worker's Wasm module compiled in this Node's V8, the engine workerd
//     embeds (another version of it): a median of repeats;
//   - in workerd, a fresh Worker's first webhook against the next ones (wall
//     time on 127.0.0.1, sequential): what the first request of an isolate pays
//     (the module's instantiation, reading the configuration, cold JavaScript
//     and Wasm code), for mailhook and for the JS baseline.
import path from "node:path";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startMailhook } from "../tests/integration/harness.mjs";
import { mailerooRequest, startBaseline } from "./load.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REPEATS = 25;
const FRESH = 3;
const STEADY = 20;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** The Worker's module compiled in this process's V8 (median ms), where this V8 can compile it. */
function inV8() {
  try {
    const bytes = readFileSync(path.join(root, "build/index_bg.wasm"));
    const times = [];
    for (let i = 0; i < REPEATS; i++) {
      const t = process.hrtime.bigint();
      new WebAssembly.Module(bytes);
      times.push(ms(t));
    }
    return { v8: process.versions.v8, compile: median(times) };
  } catch (e) {
    return { v8: process.versions.v8, compile: `not measured: this V8 cannot compile it (${e?.name ?? "an error"}; workerd's newer V8 can)` };
  }
}

async function post(url) {
  const { body, headers } = mailerooRequest();
  const t = process.hrtime.bigint();
  const r = await fetch(`${url}/webhooks/maileroo`, { method: "POST", body, headers });
  await r.arrayBuffer();
  if (r.status !== 200) throw new Error(`start-up request answered ${r.status}`);
  return ms(t);
}

/** The first request of a fresh Worker, and the median of the next ones (ms). */
async function firstRequest(start) {
  const w = await start();
  try {
    const first = await post(w.url);
    const next = [];
    for (let j = 0; j < STEADY; j++) next.push(await post(w.url));
    return { first, steady: median(next) };
  } finally {
    await w.dispose();
  }
}

export async function measureStartup() {
  const v8 = inV8();
  const startMailhookHere = () => startMailhook({ listen: true, consumers: false, vars: { ORIGIN_URL: "http://127.0.0.1:9/unused" } });
  await firstRequest(startMailhookHere); // once, not counted: the first workerd of the run warms the machine's caches
  const mailhook = [];
  const js = [];
  // Interleaved, so that drift hits both.
  for (let i = 0; i < FRESH; i++) {
    mailhook.push(await firstRequest(startMailhookHere));
    js.push(await firstRequest(() => startBaseline("worker.js")));
  }
  return { v8, mailhook, js };
}

export function startupMarkdown({ v8, mailhook, js }) {
  const f = (x) => (typeof x === "number" ? `${x.toFixed(2)} ms` : x);
  const row = (name, runs) => {
    const extra = runs.map((r) => r.first - r.steady);
    return `| ${name} | ${runs.map((r) => r.first.toFixed(1)).join(", ")} ms | ${runs.map((r) => r.steady.toFixed(1)).join(", ")} ms | ${median(extra).toFixed(1)} ms |`;
  };
  return `**Start-up.** The Worker's Wasm compiled in V8 ${v8.v8} (this Node's; median of ${REPEATS}, \`bench/startup.mjs\`):
${f(v8.compile)}. workerd compiles a Worker's Wasm when it loads the Worker, before its first request. In workerd, a fresh
Worker's first webhook against the next ${STEADY} (wall time, sequential, ${FRESH} fresh Workers each, interleaved; the first
request also pays for the instantiation, reading the configuration, and the first KV and Queue calls of the instance, and
mailhook's instance has more bindings: R2, D1, three queues):

| Worker | first request | next requests (median) | first − next (median) |
|---|---|---|---|
${row("mailhook", mailhook)}
${row("JS baseline", js)}`;
}
