/**
 * The persisted confirmation deadline of magic rollback (agent/confirmation-deadline.ts) as the
 * daemon's ConfirmationWatch uses it: a deadline left by an agent before 2026-12 in
 * agent-state.json (the agent a switch just replaced) is taken over and still fires; an unreadable
 * file is set aside, never acted upon.
 */
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { statePaths } from "../../agent/config.js";
import type { AgentContext } from "../../agent/context.js";
import { ConfirmationWatch } from "../../agent/magic-rollback.js";
import { StateStore, type AwaitingConfirmation } from "../../agent/state.js";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

/** `before`: what an earlier agent process left in the state dir. */
function context(before?: (stateDir: string) => void): { ctx: AgentContext; stateDir: string } {
  const stateDir = mkdtempSync(join(tmpdir(), "lockstep-confirm-deadline-"));
  dirs.push(stateDir);
  before?.(stateDir);
  const paths = statePaths(stateDir);
  const ctx = {
    config: { magicRollback: true, confirmTimeoutSeconds: 120 },
    log: pino({ level: "silent" }),
    paths,
    state: new StateStore(paths.state, () => undefined),
    stopping: () => false,
  } as unknown as AgentContext;
  return { ctx, stateDir };
}

describe("the daemon's persisted confirmation deadline", () => {
  it("takes over a deadline an older agent kept in agent-state.json, and rolls back at it", async () => {
    const legacy: AwaitingConfirmation = { job: "sw-1", deadline: new Date(Date.now() - 1000).toISOString(), timeoutSeconds: 120, generationBefore: 4, generationAfter: 5 };
    const { ctx } = context((dir) => writeFileSync(statePaths(dir).state, JSON.stringify({ seenCommandIds: [], awaitingConfirmation: legacy })));
    let expired!: (p: AwaitingConfirmation) => void;
    const fired = new Promise<AwaitingConfirmation>((r) => (expired = r));
    const watch = new ConfirmationWatch(ctx, (p) => expired(p));
    expect(ctx.state.state.awaitingConfirmation).toBeUndefined();
    expect(watch.pending()).toEqual(legacy);
    watch.arm();
    expect(await fired).toEqual(legacy);
    watch.disarm();
  });

  it("a confirmation removes it; a new switch's deadline replaces it", () => {
    const { ctx } = context();
    const watch = new ConfirmationWatch(ctx, () => expect.unreachable("no deadline may pass here"));
    const deadline = watch.expect({ id: "sw-2" }, { state: "succeeded", summary: "", generationBefore: 1, generationAfter: 2 })!;
    expect(Date.parse(deadline) - Date.now()).toBeGreaterThan(100_000);
    expect(watch.pending()).toMatchObject({ job: "sw-2", deadline, generationBefore: 1, generationAfter: 2 });
    expect(() => watch.confirm("sw-1")).toThrow("switch sw-1 is not awaiting confirmation (sw-2 is)");
    expect(watch.confirm("sw-2")).toBe("confirmed switch sw-2: keeping generation 2");
    expect(watch.pending()).toBeUndefined();
    expect(existsSync(ctx.paths.awaitingConfirmation)).toBe(false);
    watch.disarm();
  });

  it("an unreadable deadline file is moved aside, not acted upon", () => {
    const { ctx, stateDir } = context();
    writeFileSync(ctx.paths.awaitingConfirmation, "{ half written");
    const watch = new ConfirmationWatch(ctx, () => expect.unreachable("nothing to roll back"));
    expect(watch.pending()).toBeUndefined();
    expect(readdirSync(stateDir).some((f) => f.startsWith("awaiting-confirmation.json.broken-"))).toBe(true);
    watch.arm();
    watch.disarm();
  });
});
