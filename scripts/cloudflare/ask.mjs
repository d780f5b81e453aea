// Questions on the terminal, or one line each from standard input when it is not one (a script, the tests).
// A hidden answer is never echoed: on a terminal nothing is drawn while it is typed.
import readline from "node:readline";

let rl;
const lines = [];
const waiting = [];
let closed = false;
let muted = false;

function open() {
  if (rl) return;
  // No history: the Up arrow at a later question must not bring back a hidden answer.
  rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: Boolean(process.stdin.isTTY), historySize: 0 });
  // Ctrl-C at a question stops the whole command (its own SIGINT handler, if any, cleans up), not just the question.
  rl.on("SIGINT", () => {
    process.stderr.write("\n");
    process.kill(process.pid, "SIGINT");
  });
  // While a hidden answer is typed, nothing of it reaches the terminal.
  rl._writeToOutput = (s) => {
    if (!muted || s.includes("\n")) process.stderr.write(muted ? "\n" : s);
  };
  rl.on("line", (l) => (waiting.length ? waiting.shift()(l) : lines.push(l)));
  rl.on("close", () => {
    closed = true;
    while (waiting.length) waiting.shift()(null);
  });
}

/** Asks `question`; resolves with the answer, trimmed, or null when there is no more input. */
export async function ask(question, { hidden = false } = {}) {
  open();
  process.stderr.write(`${question} `);
  muted = hidden && Boolean(process.stdin.isTTY);
  const answer = lines.length ? lines.shift() : closed ? null : await new Promise((r) => waiting.push(r));
  muted = false;
  if (!process.stdin.isTTY) process.stderr.write("\n");
  return answer === null ? null : answer.trim();
}

/** Lets the process end (the open interface holds standard input). */
export function done() {
  rl?.close();
}
