// `npm test`: the whole suite. Installs what is missing (setup.sh), runs the
// native core tests, builds the Worker, runs the integration tests in workerd,
// and ends with one line: "mailhook: N passed, M failed".
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
process.env.WRANGLER_SEND_METRICS = "false";

/** Runs a command, echoing its output, and resolves with { code, output }. */
function run(cmd, args, { capture = false } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", capture ? "pipe" : "inherit", "inherit"] });
    let output = "";
    child.stdout?.on("data", (d) => {
      output += d;
      process.stdout.write(d);
    });
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}

const totals = { passed: 0, failed: 0 };
const step = (name) => console.log(`\n=== ${name}`);

step("setup and build");
const build = await run("bash", ["scripts/build.sh"]);
if (build.code !== 0) {
  console.error("the build failed; see above");
  process.exit(1);
}

step("format and lints (cargo fmt --check, cargo clippy -D warnings, native and wasm32)");
for (const args of [
  ["fmt", "--check"],
  ["clippy", "--all-targets", "--color", "never", "--", "-D", "warnings"],
  ["clippy", "--lib", "--target", "wasm32-unknown-unknown", "--color", "never", "--", "-D", "warnings"],
]) {
  const r = await run("cargo", args);
  if (r.code === 0) totals.passed += 1;
  else {
    totals.failed += 1;
    console.error(`cargo ${args.join(" ")} failed; run it locally and fix what it names`);
  }
}

step("native tests (cargo test)");
const native = await run("cargo", ["test", "--color", "never"], { capture: true });
for (const m of native.output.matchAll(/test result: \w+\. (\d+) passed; (\d+) failed/g)) {
  totals.passed += Number(m[1]);
  totals.failed += Number(m[2]);
}
if (native.code !== 0 && totals.failed === 0) totals.failed += 1; // a compile error counts

step("the console's browser (Debian chromium, installed where missing)");
const browser = await run("bash", ["scripts/browser.sh"]);
if (browser.code !== 0) {
  totals.failed += 1;
  console.error("chromium is missing and could not be installed: the console's browser tests will fail");
}

step("integration tests (Miniflare/workerd)");
const integration = await run(
  "node",
  ["--test", "--test-reporter=spec", "--test-concurrency=1", "tests/integration/"],
  { capture: true },
);
const count = (word) => Number(integration.output.match(new RegExp(`^\\S*\\s*${word} (\\d+)$`, "m"))?.[1] ?? 0);
totals.passed += count("pass");
totals.failed += count("fail");
if (integration.code !== 0 && count("fail") === 0) totals.failed += 1;

console.log(`\nmailhook: ${totals.passed} passed, ${totals.failed} failed`);
process.exit(totals.failed === 0 && native.code === 0 && integration.code === 0 ? 0 : 1);
