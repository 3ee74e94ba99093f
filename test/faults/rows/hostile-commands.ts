/**
 * Hostile command payloads sent to a real agent (a child process on a real broker, real git): shell
 * text in arguments, unknown ops and fields, an expired command, garbage. The agent runs only
 * allow-listed ops with validated arguments; no payload text ever reaches a shell.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestFleet } from "../../fleet/fleet.js";
import { startTestBroker } from "../../support/brokers.js";
import { Checks, settle, type FaultRow } from "../row.js";

export const hostileCommands: FaultRow = {
  name: "hostile-commands",
  scenario: "commands with shell text in a commit, a branch and an input name, an unknown op, an unknown argument, an expired command, non-JSON, an empty and a 1 MiB payload, sent to a real agent",
  expected: "each refused with a job state 'rejected' naming the field (unparseable ones dropped), nothing executed, the agent stays up and runs the next valid command",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const root = mkdtempSync(join(tmpdir(), "lockstep-faults-hostile-"));
    ctx.cleanup(() => rmSync(root, { recursive: true, force: true }));
    const broker = await startTestBroker({ kind: "aedes" });
    ctx.cleanup(() => broker.stop());
    const fleet = await TestFleet.create({ root, hosts: ["delta"], broker, logLevel: "info" });
    ctx.cleanup(() => fleet.stop());
    const head = fleet.checkoutHead("delta");
    const pwned = join(root, "pwned");
    const shell = `$(touch ${pwned}); touch ${pwned}`;
    const now = Date.now();
    const meta = (id: string) => ({ id, issuedAt: new Date(now).toISOString(), expiresAt: new Date(now + 600_000).toISOString(), requestedBy: "attacker" });
    const hostile: Array<[string, unknown]> = [
      ["commit", { ...meta("h-commit"), op: "switch", args: { commit: shell } }],
      ["branch", { ...meta("h-branch"), op: "update-inputs", args: { push: true, branch: `main; ${shell}` } }],
      ["input", { ...meta("h-input"), op: "update-inputs", args: { inputs: [`nixpkgs --override-input x ${shell}`] } }],
      ["op", { ...meta("h-op"), op: "exec", args: { cmd: shell } }],
      ["field", { ...meta("h-field"), op: "refresh", args: { cmd: shell } }],
      ["expired", { ...meta("h-expired"), issuedAt: new Date(now - 3 * 86_400_000).toISOString(), expiresAt: new Date(now - 86_400_000).toISOString(), op: "pull", args: { commit: head } }],
    ];
    for (const [, payload] of hostile) await fleet.sendCommand("delta", JSON.stringify(payload));
    for (const garbage of ["not json at all", "", "x".repeat(2 ** 20), '{"__proto__":{"op":"switch"}}']) await fleet.sendCommand("delta", garbage);

    const states: string[] = [];
    for (const [what, payload] of hostile) {
      const id = (payload as { id: string }).id;
      const job = await settle(fleet.waitForJob("delta", id, { timeoutMs: 30_000 }));
      const state = job.ok ? job.value.state : "no answer";
      states.push(`${what} ${state}`);
      c.expect(state === "rejected", `${what}: ${state}, not rejected`);
      if (job.ok && what !== "expired" && what !== "op") c.expect(/args/.test(`${job.value.error ?? ""} ${job.value.summary}`), `${what}: the reason does not name the argument (${job.value.error ?? job.value.summary})`);
    }
    c.see(states.join(", "));
    const after = await fleet.runCommand("delta", "refresh");
    c.see(`then refresh ${after.state}`);
    c.expect(after.state === "succeeded", "a valid command after them did not succeed");
    const proc = fleet.agentProcess("delta");
    c.see(`agent ${fleet.isAgentRunning("delta") ? "up" : "down"}, started ${proc.starts}x; checkout ${fleet.checkoutHead("delta") === head ? "unchanged" : "moved"}; ${existsSync(pwned) ? "SHELL RAN" : "no shell ran"}`);
    c.expect(fleet.isAgentRunning("delta") && proc.starts === 1, "the agent crashed or restarted");
    c.expect(!existsSync(pwned), "payload text reached a shell");
    c.expect(fleet.checkoutHead("delta") === head, "the checkout moved");
    return c.outcome();
  },
};
