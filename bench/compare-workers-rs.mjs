// The choice behind issue 14, measured: the webhook path as it is (the entry
// module and build/ingest.wasm) against the same path in workers-rs, as it was
// before the split (commit 2ed0170: every request through the workers-rs
// Worker), with the JS baseline and the floor, in interleaved rounds, by the
// isolate CPU of bench/isolate-cpu.mjs. `node bench/compare-workers-rs.mjs`
// (about 15 minutes the first time: it checks out and builds that commit in a
// git worktree in the temporary directory; BENCH_SECONDS, BENCH_ROUNDS). Prints a Markdown table.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startMailhook } from "../tests/integration/harness.mjs";
import { connect, INTERVAL_US } from "./isolate-cpu.mjs";
import { load as loadWith, startBaseline } from "./load.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BEFORE = "2ed0170";
// Outside this checkout: under it, that Worker's Miniflare does not start.
const dir = path.join(os.tmpdir(), `mailhook-workers-rs-${BEFORE}`);
const DURATION = Number(process.env.BENCH_SECONDS ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const VARS = { ORIGIN_URL: "http://127.0.0.1:9/unused" };
const say = (m) => process.stderr.write(`compare: ${m}\n`);
process.env.WRANGLER_SEND_METRICS = "false";

if (!existsSync(path.join(dir, "build/index.js"))) {
  say(`building ${BEFORE} in ${dir} (once)`);
  if (!existsSync(dir)) execFileSync("git", ["worktree", "add", "--force", "--detach", dir, BEFORE], { cwd: root, stdio: "inherit" });
  if (!existsSync(path.join(dir, "node_modules"))) symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"));
  execFileSync("bash", ["scripts/build.sh"], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
}

/** The older Worker, started by its own harness in a process of its own (Miniflare resolves its files from the working directory). */
async function startBefore(inspectorPort) {
  // A dynamic import from a CommonJS -e script: a module -e script with top-level await never got Miniflare ready here.
  const script = `import("./tests/integration/harness.mjs").then(async ({ startMailhook }) => {
  const w = await startMailhook({ listen: true, consumers: false, inspectorPort: ${inspectorPort}, vars: ${JSON.stringify(VARS)} });
  console.log("URL " + w.url);
  process.stdin.resume();
  process.stdin.on("end", async () => { await w.dispose(); process.exit(0); });
});`;
  const child = spawn(process.execPath, ["-e", script], { cwd: dir, stdio: ["pipe", "pipe", "ignore"] });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/URL (\S+)/);
      if (m) resolve(m[1]);
    });
    child.on("exit", (code) => reject(new Error(`the ${BEFORE} Worker exited (${code}) before it was ready`)));
  });
  child.stdout.resume();
  return { url, port: inspectorPort, dispose: () => new Promise((r) => { child.on("exit", r); child.stdin.end(); }) };
}

const workers = {
  "entry module + ingest.wasm (now)": { ...(await startMailhook({ listen: true, consumers: false, inspectorPort: 9651, vars: VARS })), port: 9651 },
  [`workers-rs (${BEFORE})`]: await startBefore(9671),
  "JS baseline": await startBaseline("worker.js", { inspectorPort: 9691 }),
  floor: await startBaseline("floor.js", { inspectorPort: 9711 }),
};
for (const w of Object.values(workers)) {
  w.inspector = await connect(w.port);
  await loadWith(w.url, { duration: 2 }); // warm-up
}
const rounds = Object.fromEntries(Object.keys(workers).map((n) => [n, []]));
for (let r = 1; r <= ROUNDS; r++) {
  for (const [name, w] of Object.entries(workers)) {
    const { result, profile } = await w.inspector.during(() => loadWith(w.url, { duration: DURATION }));
    const frame = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
    let busy = 0;
    let wasm = 0;
    for (const s of profile.samples) {
      const f = frame.get(s);
      if (f.functionName === "(idle)") continue;
      busy += 1;
      if (f.url.startsWith("wasm:") || /^(wasm-function|js-to-wasm|wasm-to-js)/.test(f.functionName)) wasm += 1;
    }
    const n = result.requests.total;
    rounds[name].push({ us: (busy * INTERVAL_US) / n, wasm: (wasm * INTERVAL_US) / n, non2xx: result.non2xx });
    say(`${name} round ${r}: ${((busy * INTERVAL_US) / n).toFixed(1)} µs/request, non-2xx ${result.non2xx}`);
  }
}
for (const w of Object.values(workers)) {
  w.inspector.close();
  await w.dispose();
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const above = (name) => rounds[name].map((x, i) => x.us - rounds.floor[i].us);
console.log(`| webhook path (${ROUNDS} rounds of ${DURATION} s) | isolate CPU per request | above the floor, per round | mean above the floor | of it in Wasm |`);
console.log("|---|---|---|---|---|");
for (const name of Object.keys(workers)) {
  const own = name === "floor" ? null : above(name);
  console.log(`| ${name} | ${mean(rounds[name].map((x) => x.us)).toFixed(1)} µs | ${own ? own.map((x) => x.toFixed(1)).join(", ") + " µs" : ""} | ${own ? `**${mean(own).toFixed(1)} µs**` : ""} | ${mean(rounds[name].map((x) => x.wasm)).toFixed(1)} µs |`);
}
process.exit(0);
