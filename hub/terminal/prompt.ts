/** A password prompt on the controlling terminal that does not echo what is typed. */
import type { PasswordPrompt } from "./credentials.js";

export function terminalPrompt(): PasswordPrompt | undefined {
  const input = process.stdin;
  if (!input.isTTY) return undefined;
  return (question) =>
    new Promise<string>((resolve, reject) => {
      process.stderr.write(question);
      input.setRawMode(true);
      input.resume();
      let typed = "";
      const done = (err?: Error) => {
        input.setRawMode(false);
        input.pause();
        input.off("data", onData);
        process.stderr.write("\n");
        if (err) reject(err);
        else resolve(typed);
      };
      const onData = (chunk: Buffer) => {
        for (const ch of chunk.toString("utf8")) {
          if (ch === "\r" || ch === "\n") return done();
          if (ch === "\u0003") return done(new Error("interrupted"));
          if (ch === "\u007f" || ch === "\b") typed = typed.slice(0, -1);
          else typed += ch;
        }
      };
      input.on("data", onData);
    });
}
