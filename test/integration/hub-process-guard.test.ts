/**
 * The `lockstep hub` process and its own faults (hub/process-guard.ts), on a real hub process: an
 * unhandled rejection is logged and audited once and the hub keeps serving (Node's default would
 * exit); a SIGKILLed hub's next start audits the unclean stop, a clean stop does not. Needs
 * `npm run build`.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialStore } from "../../broker/credentials.js";
import type { AuditEvent } from "../../protocol/schemas.js";
import { RUNNING_MARKER } from "../../hub/process-guard.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";

const OPERATOR = { name: "guard-op", password: "guard-operator-password" };
const auth = `Basic ${Buffer.from(`${OPERATOR.name}:${OPERATOR.password}`).toString("base64")}`;
const INJECT = join(__dirname, "..", "support", "inject-rejection.cjs");

describe("the hub process's own faults", () => {
  let dataDir: string;
  let hub: HubProcess | undefined;
  const start = () => startHubProcess({ dataDir, env: { LOCKSTEP_HA_ENABLED: "false", NODE_OPTIONS: `--require ${INJECT}` } });
  const audit = async (h: HubProcess): Promise<AuditEvent[]> => {
    const res = await fetch(`${h.baseUrl}/api/audit?limit=500`, { headers: { authorization: auth } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { events: AuditEvent[] }).events;
  };
  const waitForAudit = async (h: HubProcess, action: string, count = 1): Promise<AuditEvent[]> => {
    for (let i = 0; i < 300; i++) {
      const found = (await audit(h)).filter((e) => e.action === action);
      if (found.length >= count) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no ${action} in the audit log; hub output:\n${h.output()}`);
  };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "lockstep-hub-guard-"));
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
  });

  afterAll(async () => {
    await hub?.stop("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("an unhandled rejection is logged and audited once, and the hub keeps serving", async () => {
    hub = await start();
    expect((await audit(hub)).map((e) => e.action)).not.toContain("hub.unclean-stop"); // a first start
    hub.child.kill("SIGUSR2");
    const [fault] = await waitForAudit(hub, "hub.fault");
    expect(fault!.details).toMatchObject({ kind: "unhandled-rejection", message: expect.stringContaining("injected by the test") });
    // The same fault again within the minute: logged, not audited again.
    hub.child.kill("SIGUSR2");
    await expect.poll(() => hub!.output().split("injected by the test").length - 1, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect((await audit(hub)).filter((e) => e.action === "hub.fault")).toHaveLength(1);
    expect(hub.child.exitCode).toBeNull();
    const whoami = await fetch(`${hub.baseUrl}/api/whoami`, { headers: { authorization: auth } });
    expect(whoami.status).toBe(200);
  }, 120_000);

  it("after a SIGKILL the next start audits the unclean stop; after a clean stop it does not", async () => {
    const killedPid = hub!.child.pid;
    await hub!.stop("SIGKILL");
    expect(existsSync(join(dataDir, RUNNING_MARKER))).toBe(true);
    hub = await start();
    const [unclean] = await waitForAudit(hub, "hub.unclean-stop");
    expect(unclean!.details).toMatchObject({ previousPid: killedPid });

    expect(await hub.stop("SIGTERM")).toBe(0);
    expect(existsSync(join(dataDir, RUNNING_MARKER))).toBe(false); // a clean stop leaves nothing to report
    hub = await start();
    expect(existsSync(join(dataDir, RUNNING_MARKER))).toBe(true);
    expect((await audit(hub)).filter((e) => e.action === "hub.unclean-stop")).toHaveLength(1);
  }, 180_000);
});
