// The floor with mailhook's log line: floor.js's binding calls, and the same
// structured log line per request that mailhook and the JS baseline write
// (JSON.stringify and console.log of the same fields). Its CPU above the
// floor is what that line costs any Worker. Used only by `npm run bench`.
let n = 0;
const newOps = () => ({
  requests: 1, kv_read: 0, kv_write: 0, queue_write: 0, queue_read: 0, queue_delete: 0,
  r2_class_a: 0, r2_class_b: 0, d1_queries: 0, d1_rows_read: 0, d1_rows_written: 0, subrequests: 0,
});
export default {
  async fetch(request, env) {
    const started = Date.now();
    const ops = newOps();
    const body = await request.arrayBuffer();
    const id = `floor-${Date.now()}-${n++}`;
    ops.kv_read += 1;
    if (await env.DEDUPE.get(`dedupe:${id}`)) return new Response("{}", { status: 200 });
    ops.queue_write += 1;
    await env.EVENTS.send(JSON.stringify({ id, size: body.byteLength }), { contentType: "text" });
    ops.kv_write += 1;
    await env.DEDUPE.put(`dedupe:${id}`, "1", { expirationTtl: 604800 });
    const ids = [id];
    console.log(JSON.stringify({
      kind: "request", method: "POST", path: "/webhooks/maileroo", provider: "maileroo", status: 200, ids,
      ms: Date.now() - started, wasm_kib: 0, ops,
    }));
    return new Response(JSON.stringify({ status: "accepted", ids }), { headers: { "content-type": "application/json" } });
  },
};
