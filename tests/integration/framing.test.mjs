// Request framing on workerd's own socket (Miniflare's dispatchFetch refuses
// a request with both Content-Length and Transfer-Encoding; workerd does not).
// Found in issue 22: a request announcing `Content-Length: 10` with a chunked
// body of any size took a small-body path with no limit, and an
// unauthenticated sender had 202 MiB read before its 413.
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { sleep, startMailhook } from "./harness.mjs";

const MiB = 1024 * 1024;

/** The resident memory of this test's workerd processes, in bytes. */
function workerdRss() {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (!stat.includes("(workerd)") || Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) !== process.pid) continue;
      const rss = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmRSS:\s+(\d+) kB/m);
      total += rss ? Number(rss[1]) * 1024 : 0;
    } catch {}
  }
  return total;
}

/**
 * Sends `head` and then a chunked body of 64 KiB chunks, up to `max` bytes,
 * until an answer arrives (pausing `pause` ms after the first). Resolves with the answer's status line, the bytes
 * of body written before it came, and whether the body was cut short by it.
 */
function chunkedUntilAnswer(url, head, max, { pause = 0 } = {}) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let answer = "";
    let written = 0;
    let done = false;
    const finish = (why) => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ status: Number(answer.match(/^HTTP\/1\.1 (\d{3})/)?.[1] ?? 0), answer, written, ended: why === "ended" });
    };
    socket.on("data", (d) => {
      answer += d.toString("latin1");
      if (/\r\n\r\n/.test(answer)) setTimeout(() => finish("answered"), 50);
    });
    socket.on("error", () => finish("error"));
    socket.on("close", () => finish("closed"));
    socket.on("connect", async () => {
      socket.write(head);
      const chunk = Buffer.concat([Buffer.from("10000\r\n"), Buffer.alloc(0x10000, "x"), Buffer.from("\r\n")]);
      try {
        while (!done && written < max) {
          if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r));
          written += 0x10000;
          // `pause`: after the first chunk, time for an answer that comes without reading on. workerd then closes
          // the socket with the body unread, and its reset can discard an answer not yet read here.
          await sleep(written === 0x10000 && pause ? pause : 1);
        }
        if (!done) socket.write("0\r\n\r\n");
      } catch (e) {
        if (!done) reject(e);
      }
    });
  });
}

describe("framing on workerd's socket", () => {
  let hook;
  before(async () => {
    hook = await startMailhook({ listen: true, consumers: false });
  });
  after(async () => {
    await hook?.dispose();
  });

  test("Content-Length: 10 with a chunked body of 64 MiB: 413 before the body ends, and memory does not grow by its size", async () => {
    // Warm the isolate first, so that its first request's growth is not counted: /healthz, then this very request
    // once (workerd compiles the Wasm the path runs when it first runs it, the module is 3.5 MB since 0.8, and the
    // Wasm memory grows once to what reading up to the cap takes).
    const warm = await fetch(`${hook.url}/healthz`);
    await warm.arrayBuffer();
    const head = [
      "POST /webhooks/maileroo HTTP/1.1",
      `Host: ${new URL(hook.url).host}`,
      "Content-Type: application/json",
      // A bogus signature: the body is read (its HMAC needs it all), and it is bounded by the 1 MiB cap of signed sources.
      "X-Maileroo-Signature: 00",
      "Content-Length: 10",
      "Transfer-Encoding: chunked",
      "",
      "",
    ].join("\r\n");
    await chunkedUntilAnswer(hook.url, head, 64 * MiB);
    hook.logs.length = 0;
    const rssBefore = workerdRss();
    const r = await chunkedUntilAnswer(hook.url, head, 64 * MiB);
    const rssAfter = workerdRss();
    assert.equal(r.status, 413, r.answer.slice(0, 300));
    assert.match(r.answer, /payload_too_large/);
    assert.ok(!r.ended, "the answer came before the body ended");
    assert.ok(r.written < 16 * MiB, `${(r.written / MiB).toFixed(1)} MiB were written before the answer`);
    assert.ok(rssAfter - rssBefore < 32 * MiB, `workerd grew by ${((rssAfter - rssBefore) / MiB).toFixed(1)} MiB`);
    const line = hook.logs.map((l) => { try { return JSON.parse(l); } catch { return null; } })
      .find((l) => l?.kind === "request" && l.path === "/webhooks/maileroo");
    assert.ok(line, "the request's log line");
    assert.equal(line.code, "payload_too_large");
    assert.ok(line.wasm_kib < 16 * 1024, `the Wasm memory is ${line.wasm_kib} KiB`);
  });

  test("an unauthenticated chunked body with Content-Length: 10 is never read (401)", async () => {
    const head = [
      "POST /webhooks/maileroo HTTP/1.1",
      `Host: ${new URL(hook.url).host}`,
      "Content-Type: application/json",
      "Content-Length: 10",
      "Transfer-Encoding: chunked",
      "",
      "",
    ].join("\r\n");
    const r = await chunkedUntilAnswer(hook.url, head, 64 * MiB, { pause: 300 });
    assert.equal(r.status, 401, r.answer.slice(0, 300));
    assert.ok(r.written < 16 * MiB, `${(r.written / MiB).toFixed(1)} MiB were written before the answer`);
  });
});
