// Every canonical event is a valid CloudEvent for the official SDK (CONTRACT
// §4): the golden events here, and every delivered event in every test (the
// harness's origin refuses any other). Optional attributes are omitted, never null.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { cloudEventProblem } from "./harness.mjs";

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../fixtures");

test("every golden event is a valid CloudEvent", () => {
  let checked = 0;
  for (const provider of readdirSync(fixtures)) {
    for (const file of readdirSync(path.join(fixtures, provider)).filter((f) => f.endsWith(".expected.json"))) {
      const parsed = JSON.parse(readFileSync(path.join(fixtures, provider, file), "utf8"));
      for (const event of Array.isArray(parsed) ? parsed : [parsed]) {
        assert.equal(cloudEventProblem(event), null, `${provider}/${file}`);
        checked += 1;
      }
    }
  }
  assert.ok(checked >= 40, `only ${checked} golden events`);
});

test("the check refuses what the SDKs refuse", () => {
  const ok = { specversion: "1.0", id: "evt_1", source: "/providers/x", type: "email.unknown", data: {} };
  assert.equal(cloudEventProblem(ok), null);
  assert.match(cloudEventProblem({ ...ok, subject: null }), /subject/);
  assert.match(cloudEventProblem({ ...ok, time: null }), /time/);
  assert.match(cloudEventProblem({ ...ok, time: "yesterday" }), /time|format/);
  assert.ok(cloudEventProblem({ ...ok, subject: "" }));
  assert.ok(cloudEventProblem({ ...ok, source: undefined }));
});
