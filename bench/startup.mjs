// Start-up cost of the webhook path, for bench/run.mjs (§2):
//   - the ingest module (build/ingest.wasm) compiled, instantiated and
//     initialised (`mh_init` with the bench's configuration) in this Node's V8,
//     the engine workerd embeds (another version of it): a median of repeats;
//     the workers-rs module's compile beside it, where this V8 can compile it;
//   - in workerd, a fresh Worker's first webhook against the next ones (wall
//     time on 127.0.0.1, sequential): what the first request of an isolate pays
//     (the module's instantiation, `mh_init`, cold JavaScript and Wasm code),
//     for mailhook and for the JS baseline.
import path from "node:path";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startMailhook, wrangler } from "../tests/integration/harness.mjs";
import { mailerooRequest, MAILEROO_SECRET, startBaseline } from "./load.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REPEATS = 25;
const FRESH = 3;
const STEADY = 20;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Compile, instantiate and `mh_init` of the ingest module in this process's V8 (median ms). */
function inV8() {
  const bytes = readFileSync(path.join(root, "build/ingest.wasm"));
  // As the entry module hands them over: text, and structured [vars] as JSON.
  const all = { ...wrangler.vars, MAILEROO_WEBHOOK_SECRET: MAILEROO_SECRET, ORIGIN_URL: "http://127.0.0.1:9/unused" };
  const vars = JSON.stringify(Object.fromEntries(Object.entries(all).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)])));
  const compile = [];
  const instantiate = [];
  const init = [];
  for (let i = 0; i < REPEATS; i++) {
    let t = process.hrtime.bigint();
    const module = new WebAssembly.Module(bytes);
    compile.push(ms(t));
    t = process.hrtime.bigint();
    const x = new WebAssembly.Instance(module, {}).exports;
    instantiate.push(ms(t));
    t = process.hrtime.bigint();
    const input = Buffer.from(vars);
    const at = x.mh_input(input.length); // may grow the memory: the view after it
    new Uint8Array(x.memory.buffer, at, input.length).set(input);
    const len = x.mh_init(input.length);
    const answer = JSON.parse(Buffer.from(new Uint8Array(x.memory.buffer, x.mh_output(), len)).toString());
    init.push(ms(t));
    if (answer.error) throw new Error(`mh_init: ${answer.error}`);
  }
  let full;
  try {
    const bytes = readFileSync(path.join(root, "build/index_bg.wasm"));
    const times = [];
    for (let i = 0; i < 5; i++) {
      const t = process.hrtime.bigint();
      new WebAssembly.Module(bytes);
      times.push(ms(t));
    }
    full = median(times);
  } catch (e) {
    full = `not measured: this V8 cannot compile it (${e?.name ?? "an error"}; workerd's newer V8 can)`;
  }
  return { v8: process.versions.v8, compile: median(compile), instantiate: median(instantiate), init: median(init), full };
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
  return `**Start-up.** The ingest module in V8 ${v8.v8} (this Node's; median of ${REPEATS}, \`bench/startup.mjs\`): compile
${f(v8.compile)}, instantiate ${f(v8.instantiate)}, \`mh_init\` (reading the configuration) ${f(v8.init)}; in all
**${f(v8.compile + v8.instantiate + v8.init)}**. The workers-rs module's compile, for comparison: ${f(v8.full)}. workerd compiles
a Worker's Wasm modules when it loads the Worker, and the entry module instantiates the ingest module at the first webhook.
In workerd, a fresh Worker's first webhook against the next ${STEADY} (wall time, sequential, ${FRESH} fresh Workers each, interleaved; the first
request also pays for the first KV and Queue calls of the instance, and mailhook's instance has more bindings: R2, D1, three queues):

| Worker | first request | next requests (median) | first − next (median) |
|---|---|---|---|
${row("mailhook", mailhook)}
${row("JS baseline", js)}`;
}
