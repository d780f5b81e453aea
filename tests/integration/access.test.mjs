// Who may reach the console and the admin API beyond the token: per-address
// limits (Cloudflare's Rate Limiting binding, as Miniflare runs it, with
// wrangler.toml's [[ratelimits]]) and console sessions ended on the server.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SECRETS, startMailhook } from "./harness.mjs";

const CONSOLE = { "x-mailhook-console": "1", "content-type": "application/json" };
const signIn = (hook, token, ip = "203.0.113.7") =>
  hook.request("/console/session", { method: "POST", headers: { ...CONSOLE, "cf-connecting-ip": ip }, body: JSON.stringify({ token }) });
const cookieOf = (r) => (r.headers.get("set-cookie") ?? "").split(";")[0];

describe("access to the console and the admin API", () => {
  test("console sign-ins are limited per address: the 11th in a minute is refused, right token or not, and other addresses go on", async () => {
    const hook = await startMailhook({ ratelimits: true });
    try {
      for (let i = 0; i < 10; i++) assert.equal((await signIn(hook, `guess-${i}`)).status, 401);
      const limited = await signIn(hook, SECRETS.ADMIN_TOKEN);
      assert.equal(limited.status, 429, limited.text);
      assert.equal(limited.json.error.code, "rate_limited");
      assert.match(limited.json.error.message, /too many console sign-ins from this address; try again in 60 seconds/);
      assert.equal(limited.headers.get("retry-after"), "60");
      assert.ok(limited.headers.get("content-security-policy"), "a console answer, with the console's headers");
      assert.equal((await signIn(hook, SECRETS.ADMIN_TOKEN, "198.51.100.4")).status, 204, "another address signs in");
      // An IPv6 client counts by its /64: another address in it is the same client.
      for (let i = 0; i < 10; i++) assert.equal((await signIn(hook, "x", `2001:db8:5:6::${i + 1}`)).status, 401);
      assert.equal((await signIn(hook, "x", "2001:db8:5:6:ffff::1")).status, 429);
      assert.equal((await signIn(hook, "x", "2001:db8:5:7::1")).status, 401);
    } finally {
      await hook.dispose();
    }
  });

  test("the admin API is limited per address, before the token is checked", async () => {
    const hook = await startMailhook({ ratelimits: { ADMIN_RATE_LIMIT: 3 } });
    const get = (ip, token = SECRETS.ADMIN_TOKEN) =>
      hook.request("/admin/events", { headers: { authorization: `Bearer ${token}`, "cf-connecting-ip": ip } });
    try {
      assert.equal((await get("203.0.113.8")).status, 200);
      assert.equal((await get("203.0.113.8", "wrong")).status, 401);
      assert.equal((await get("203.0.113.8")).status, 200);
      const limited = await get("203.0.113.8");
      assert.equal(limited.status, 429, limited.text);
      assert.match(limited.json.error.message, /too many admin requests/);
      assert.equal((await get("203.0.113.9")).status, 200);
    } finally {
      await hook.dispose();
    }
  });

  test("signing out ends the session on the server: the old cookie no longer opens the admin API", async () => {
    const hook = await startMailhook();
    const withCookie = (cookie) => ({ headers: { ...CONSOLE, cookie } });
    try {
      const r = await signIn(hook, SECRETS.ADMIN_TOKEN);
      assert.equal(r.status, 204, r.text);
      const cookie = cookieOf(r);
      assert.match(cookie, /^mailhook_session=v2\.\d+\.[0-9a-f]{32}\.[0-9a-f]{64}$/);
      assert.equal((await hook.request("/admin/events", withCookie(cookie))).status, 200);
      assert.equal((await hook.request("/console/session", withCookie(cookie))).status, 200);
      const out = await hook.request("/console/session", { method: "DELETE", ...withCookie(cookie) });
      assert.equal(out.status, 204, out.text);
      assert.match(out.headers.get("set-cookie"), /^mailhook_session=; Max-Age=0/);
      // A copy of the cookie kept elsewhere (a stolen one, or another tab) is refused now.
      const after = await hook.request("/admin/events", withCookie(cookie));
      assert.equal(after.status, 401);
      assert.match(after.json.error.message, /signed out; sign in again/);
      assert.equal((await hook.request("/console/session", withCookie(cookie))).status, 401);
      // A new sign-in is a new session.
      const again = cookieOf(await signIn(hook, SECRETS.ADMIN_TOKEN));
      assert.notEqual(again, cookie);
      assert.equal((await hook.request("/admin/events", withCookie(again))).status, 200);
      const db = await hook.db();
      assert.equal((await db.prepare("SELECT COUNT(*) AS n FROM console_signouts").first()).n, 1);
    } finally {
      await hook.dispose();
    }
  });
});
