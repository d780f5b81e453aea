// Real mail through the built Worker: every message of fixtures/corpus/ (CPython's and
// mail-parser's test data; sources and licences in fixtures/corpus/SOURCES.md) handed to the
// `email` handler as the platform hands it (over a service binding: Miniflare's local endpoint
// refuses some of these messages before the handler runs), and what reaches the origin compared
// with the core's own reading (`cargo run --example corpus`, which tests/corpus.rs checks against
// CPython's `email`): the same event, text, html and attachments byte for byte, or the same refusal.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { root, startMailhook, startOrigin, waitFor } from "./harness.mjs";

const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");
const folder = path.join(root, "fixtures/corpus");

test("every corpus message through the email handler: delivered as the core reads it, or refused with its reason", { timeout: 600_000 }, async () => {
  const expected = JSON.parse(execFileSync("cargo", ["run", "--quiet", "--example", "corpus", "--", folder], { cwd: root, maxBuffer: 64 << 20 }));
  const names = Object.keys(expected);
  assert.ok(names.length >= 100, `${names.length} messages`);
  const origin = await startOrigin();
  const hook = await startMailhook({ driver: true, vars: { ORIGIN_URL: origin.url } });
  try {
    let refused = 0;
    for (const name of names) {
      const want = expected[name];
      assert.equal(want.error, undefined, `${name}: ${want.error}`);
      const got = await hook.emailDirect(readFileSync(path.join(folder, name)));
      assert.equal(got.error, null, `${name}: the handler threw: ${got.error}`);
      if (want.refused !== undefined) {
        refused += 1;
        assert.ok(got.rejected?.includes(want.refused), `${name}: refused with ${JSON.stringify(got.rejected)}, the core says ${want.refused}`);
      } else {
        assert.equal(got.rejected, null, `${name}: refused (${got.rejected}), the core takes it`);
      }
    }
    const ids = new Set(names.filter((n) => expected[n].id).map((n) => expected[n].id));
    await waitFor(() => new Set(origin.deliveries.map((d) => d.id)).size >= ids.size, { ms: 180_000, what: `${ids.size} events at the origin` });
    const byId = new Map(names.filter((n) => expected[n].id).map((n) => [expected[n].id, n]));
    for (const d of origin.deliveries) {
      const name = byId.get(d.id);
      assert.ok(name, `an event no message made: ${d.id}`);
      const inbound = d.event.data.inbound;
      const want = expected[name];
      const text = (t) => (typeof t === "string" ? sha(Buffer.from(t, "utf8")) : null);
      assert.equal(text(inbound.text), want.text, `${name}: text`);
      assert.equal(text(inbound.html), want.html, `${name}: html`);
      const attachments = (inbound.attachments ?? []).map((a) => sha(Buffer.from(a.content_base64 ?? "", "base64"))).sort();
      assert.deepEqual(attachments, want.attachments, `${name}: attachments`);
    }
    assert.equal(new Set(origin.deliveries.map((d) => d.id)).size, ids.size, "each event delivered");
    assert.equal(origin.deliveries.length, ids.size, "and once");
    console.log(`corpus through the email handler: ${names.length} messages, ${names.length - refused} taken (${ids.size} events: the same message twice is one), ${refused} refused`);
  } finally {
    await hook.dispose();
    await origin.close();
  }
});
