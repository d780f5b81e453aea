// `npm start`: installs what is missing, builds, and runs mailhook under
// `wrangler dev` on 127.0.0.1:8787 with local KV, Queues and R2, together with
// a demo origin on 127.0.0.1:8789 that verifies and prints every delivery.
//
// Local state starts empty on every start (so a fixture is "accepted" again);
// set MAILHOOK_KEEP_STATE=1 to keep it between starts.
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
process.chdir(root);
process.env.WRANGLER_SEND_METRICS = "false";

const setup = spawnSync("bash", ["scripts/setup.sh"], { stdio: "inherit" });
if (setup.status !== 0) process.exit(setup.status ?? 1);

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("created .dev.vars from .dev.vars.example (local secrets)");
}
const { readDevVars, startDemoOrigin } = await import("./demo-origin.mjs");
const secrets = readDevVars();
const origin = startDemoOrigin({ port: 8789, secret: secrets.ORIGIN_SIGNING_SECRET ?? "" });

const state = ".wrangler/dev-state";
if (!process.env.MAILHOOK_KEEP_STATE) rmSync(state, { recursive: true, force: true });

// The D1 migrations (the dead-letter record) into the local state.
const migrate = spawnSync(
  "node_modules/.bin/wrangler",
  ["d1", "migrations", "apply", "mailhook", "--local", "--persist-to", state],
  { stdio: "inherit", env: { ...process.env, CI: "true" } },
);
if (migrate.status !== 0) {
  console.error("applying migrations/ to the local D1 database failed; see above");
  process.exit(migrate.status ?? 1);
}

const wrangler = spawn(
  "node_modules/.bin/wrangler",
  ["dev", "--ip", "127.0.0.1", "--port", "8787", "--persist-to", state, "--show-interactive-dev-session=false"],
  { stdio: "inherit" },
);
// `wrangler dev` runs no crons by itself: the minute one (alerts) is triggered here, as Cloudflare would.
const minute = setInterval(() => {
  fetch("http://127.0.0.1:8787/cdn-cgi/handler/scheduled?cron=" + encodeURIComponent("* * * * *")).catch(() => {});
}, 60_000);
const stop = () => {
  clearInterval(minute);
  wrangler.kill("SIGINT");
  origin.close();
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
wrangler.on("close", (code) => {
  clearInterval(minute);
  origin.close();
  process.exit(code ?? 0);
});
