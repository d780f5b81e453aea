// The workerd processes Miniflare started from this process: their CPU time and peak memory (from /proc).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** The CPU seconds and peak resident memory of the workerd processes Miniflare started. */
export function workerd() {
  let cpu = 0;
  let hwm = 0;
  const pids = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)], { encoding: "utf8" })
    .split("\n").map((l) => l.trim().split(/\s+/)).filter(([, c]) => c === "workerd").map(([p]) => p);
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      cpu += (Number(stat[11]) + Number(stat[12])) / 100;
      const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmHWM:\s+(\d+) kB/);
      hwm = Math.max(hwm, m ? Number(m[1]) * 1024 : 0);
    } catch { /* gone */ }
  }
  return { cpu, hwm };
}
