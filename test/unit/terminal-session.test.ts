import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { CliContext } from "../../broker/commands.js";
import { ExitCode, TerminalError } from "../../hub/terminal/errors.js";
import { withSession } from "../../hub/terminal/run.js";

/** A command context whose credentials come from the environment (no config file, no prompt, no connection). */
function context(): CliContext & { stderrText(): string } {
  let err = "";
  const home = mkdtempSync(join(tmpdir(), "lockstep-terminal-session-"));
  return {
    args: [],
    values: {},
    io: { stdout: () => {}, stderr: (t) => void (err += t), env: { HOME: home, LOCKSTEP_HUB: "http://127.0.0.1:9", LOCKSTEP_USER: "alice", LOCKSTEP_PASSWORD: "pw" } },
    config: () => {
      throw new Error("not used");
    },
    stderrText: () => err,
  };
}

const handlers = () => ({ int: process.listenerCount("SIGINT"), term: process.listenerCount("SIGTERM") });

describe("withSession's Ctrl-C handling", () => {
  it("takes SIGINT/SIGTERM only once a command asks, resolves on the signal, and hands them back when the command ends", async () => {
    const before = handlers();
    let during: ReturnType<typeof handlers> | undefined;
    const code = await withSession(context(), async (t) => {
      expect(handlers()).toEqual(before);
      const stopped = t.interrupted();
      expect(t.interrupted()).toBe(stopped);
      during = handlers();
      process.emit("SIGINT");
      await stopped;
      return ExitCode.ok;
    });
    expect(code).toBe(ExitCode.ok);
    expect(during).toEqual({ int: before.int + 1, term: before.term + 1 });
    expect(handlers()).toEqual(before);
  });

  it("hands them back when the command fails before any signal", async () => {
    const before = handlers();
    const ctx = context();
    const code = await withSession(ctx, async (t) => {
      void t.interrupted();
      expect(handlers()).not.toEqual(before);
      throw new TerminalError("the job failed", ExitCode.failure);
    });
    expect(code).toBe(ExitCode.failure);
    expect(ctx.stderrText()).toContain("the job failed");
    expect(handlers()).toEqual(before);
  });

  it("SIGTERM stops a follow like Ctrl-C", async () => {
    const before = handlers();
    await withSession(context(), async (t) => {
      const stopped = t.interrupted();
      process.emit("SIGTERM");
      await stopped;
      return ExitCode.ok;
    });
    expect(handlers()).toEqual(before);
  });
});
