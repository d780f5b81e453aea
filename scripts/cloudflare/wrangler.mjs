// Runs the project's pinned wrangler (or MAILHOOK_WRANGLER, a stand-in the tests record) without a terminal, so
// that it never prompts: its questions take their non-interactive answers.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * Runs `wrangler ...args`, with `input` on its standard input: { code, stdout, stderr }. `config`, when given, is
 * passed as --config. What it prints is shown only through `echo(line)`, when given, each line as it comes;
 * `onChild(process)` is told the running process (to stop it with the deploy).
 */
export function wrangler(args, { input, config, echo, onChild } = {}) {
  const bin = process.env.MAILHOOK_WRANGLER ?? path.join(root, "node_modules/wrangler/bin/wrangler.js");
  const full = config ? [...args, "--config", config] : args;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...full], {
      cwd: root,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    });
    onChild?.(child);
    let stdout = "";
    let stderr = "";
    let pending = "";
    const show = (d, end = false) => {
      if (!echo) return;
      const lines = (pending + d).split("\n");
      pending = end ? "" : lines.pop();
      for (const l of lines) if (l.trim()) echo(l.replace(/\x1b\[[0-9;]*m/g, ""));
    };
    child.stdout.on("data", (d) => {
      stdout += d;
      show(d);
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      show(d);
    });
    child.on("close", () => show("", true));
    child.on("error", (e) => resolve({ code: 127, stdout, stderr: String(e) }));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}

/** The JSON a wrangler command printed (after any banner), or null. */
export function jsonOf(stdout) {
  const start = stdout.search(/^[[{]/m);
  if (start < 0) return null;
  try {
    return JSON.parse(stdout.slice(start));
  } catch {
    return null;
  }
}

/** What a failed wrangler command said, its last lines without colours, for an error message. */
export function said(r) {
  const text = `${r.stderr}\n${r.stdout}`.replace(/\x1b\[[0-9;]*m/g, "").trim();
  return text.split("\n").filter((l) => l.trim()).slice(-6).join("\n    ");
}

/**
 * The names of the Worker's secrets, or null when the Worker does not exist yet (a first deploy).
 * Throws with wrangler's words on any other failure.
 */
export async function secretNames(config) {
  const r = await wrangler(["secret", "list", "--format", "json"], { config });
  if (r.code !== 0) {
    if (/not found|does not exist|10007/i.test(`${r.stdout}${r.stderr}`)) return null;
    throw new Error(`wrangler secret list failed:\n    ${said(r)}`);
  }
  const list = jsonOf(r.stdout);
  // Output that is not a list is never read as "no secrets": that would generate new ones over the old.
  if (!Array.isArray(list)) throw new Error(`wrangler secret list printed no list:\n    ${said(r)}`);
  return new Set(list.map((s) => s.name));
}

/** `wrangler secret put NAME`, the value on standard input (never in the arguments, never printed). */
export async function putSecret(name, value, config) {
  const r = await wrangler(["secret", "put", name], { input: `${value}\n`, config });
  if (r.code !== 0) throw new Error(`wrangler secret put ${name} failed:\n    ${said(r)}`);
}
