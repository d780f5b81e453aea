// Transforms: what a destination's jq program costs per delivered event, in the Worker.
//
// Two destinations on 127.0.0.1 take N signed Mailtura events each; in one run both get the structured event, in the
// other the second has the README's CRM transform (and, a third run, a program that spends its whole step budget,
// `last(range(1e15))`, so each of its deliveries dies). The difference in workerd's CPU time per event (its processes'
// /proc times: ingest, both deliveries, the simulated queues and D1 alike in both runs) is what the transform costs.
// Rounds alternate, and the medians are reported.
//
// `node bench/transforms.mjs [N]` (the Worker built first: `bash scripts/build.sh`). Prints one JSON line.
import { authHeaders, fixture, rawOrigin, startMailhook, waitFor } from "../tests/integration/harness.mjs";
import { workerd } from "./workerd.mjs";

process.env.WRANGLER_SEND_METRICS = "false";
const N = Number(process.argv[2] ?? 300);
const ROUNDS = 3;
const whsec = (n) => "whsec_" + Buffer.from(`bench-transforms-${n}-key`).toString("base64");
export const PROGRAMS = {
  plain: null,
  crm: '{contact: (.data.recipient // .data.to[0].email), event: (.type | ltrimstr("email.")), at: .time, provider: .data.provider}',
  budget: "{n: last(range(1e15))}",
};

async function run(kind, round) {
  const a = await rawOrigin(whsec("a"));
  const b = await rawOrigin(whsec("b"));
  const hook = await startMailhook({
    vars: {
      ORIGIN_URL: undefined,
      DESTINATIONS: [{ name: "a", url: a.url }, { name: "b", url: b.url, ...(PROGRAMS[kind] ? { transform: PROGRAMS[kind] } : {}) }],
    },
    secrets: { DESTINATION_A_SIGNING_SECRET: whsec("a"), DESTINATION_B_SIGNING_SECRET: whsec("b") },
  });
  try {
    const events = Array.from({ length: N }, (_, i) => {
      const v = JSON.parse(fixture("mailtura", i % 2 ? "bounced" : "delivered"));
      v.id = `evt_bench_${kind}_${round}_${i}`;
      v.timestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
      return JSON.stringify(v);
    });
    // Warm: the first event compiles the configuration (and the program) once per isolate.
    await hook.post("mailtura", events[0], authHeaders("mailtura", events[0]));
    await waitFor(() => a.requests.length === 1, { ms: 30_000 });
    const cpu0 = workerd().cpu;
    for (let i = 1; i < N; i += 10) {
      await Promise.all(events.slice(i, i + 10).map((e) => hook.post("mailtura", e, authHeaders("mailtura", e))));
    }
    await waitFor(() => a.requests.length === N, { ms: 120_000, what: "every delivery to a" });
    if (kind !== "budget") await waitFor(() => b.requests.length === N, { ms: 120_000, what: "every delivery to b" });
    else {
      const dead = async () => (await hook.admin("/admin/events?status=dead&destination=b&limit=1")).json.total;
      await waitFor(async () => (await dead()) >= N, { ms: 180_000, what: "every delivery to b dead" });
    }
    return ((workerd().cpu - cpu0) * 1000) / (N - 1);
  } finally {
    await hook.dispose();
    await a.close();
    await b.close();
  }
}

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const ms = { plain: [], crm: [], budget: [] };
for (let round = 0; round < ROUNDS; round++) {
  for (const kind of Object.keys(ms)) ms[kind].push(await run(kind, round));
}
const m = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, median(v)]));
console.log(JSON.stringify({ events: N, rounds: ROUNDS, cpuMsPerEvent: m, transformMs: m.crm - m.plain, budgetMs: m.budget - m.plain, all: ms }));
