// The floor: the binding calls of an accepted event (read the body, KV get,
// queue send, KV put) with none of the work (no HMAC, no parsing, no
// mapping). Locally, KV and Queues are simulated inside the same workerd
// process, so their CPU is in every Worker's figure; subtracting this one's
// leaves what each Worker itself spends. Used only by `npm run bench`.
let n = 0;
export default {
  async fetch(request, env) {
    const body = await request.arrayBuffer();
    const id = `floor-${Date.now()}-${n++}`;
    if (await env.DEDUPE.get(`dedupe:${id}`)) return new Response("{}", { status: 200 });
    await env.EVENTS.send(JSON.stringify({ id, size: body.byteLength }), { contentType: "text" });
    await env.DEDUPE.put(`dedupe:${id}`, "1", { expirationTtl: 604800 });
    return new Response(JSON.stringify({ status: "accepted", ids: [id] }), { headers: { "content-type": "application/json" } });
  },
};
