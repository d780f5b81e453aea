// The CPU time of one Worker's isolate, through workerd's inspector: V8's
// sampling profiler takes a sample every INTERVAL_US only while the isolate is
// locked by its thread (running JavaScript or Wasm, or the runtime working for
// it: parsing the request, serialising a binding call), and never while it
// waits, nor while the same process runs another isolate. Locally, KV and
// Queues are simulated by other isolates of the same workerd process, so the
// process's CPU time (/proc) counts their work too; the samples do not.
// So samples × INTERVAL_US is the isolate's own CPU time, the figure that
// production bills, to the sampling's resolution. Used by bench/run.mjs.
import WebSocket from "ws";

export const INTERVAL_US = 50;

/** Connects to the first Worker of the workerd whose inspector listens on `port`. */
export async function connect(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.on("open", resolve);
    ws.on("error", reject);
  });
  let id = 0;
  const pending = new Map();
  ws.on("message", (m) => {
    const msg = JSON.parse(m);
    pending.get(msg.id)?.(msg.result);
    pending.delete(msg.id);
  });
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      const i = ++id;
      pending.set(i, resolve);
      ws.send(JSON.stringify({ id: i, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: INTERVAL_US });
  return {
    /** Runs `work` with the profiler on; resolves with its result and the isolate's CPU milliseconds. */
    async during(work) {
      await send("Profiler.start");
      const result = await work();
      const { profile } = await send("Profiler.stop");
      return { result, isolateMs: (profile.samples.length * INTERVAL_US) / 1000, profile };
    },
    close: () => ws.close(),
  };
}
