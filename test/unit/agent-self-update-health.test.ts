/**
 * The self-update's failed-units check and the launchd case of `status`: a degraded host goes
 * ahead unless a required unit failed, and macOS is never asked about systemd.
 */
import { describe, expect, it } from "vitest";
import { checkFailedUnits, runHealthChecks } from "../../agent/self-update/health.js";
import { parseSelfUpdateConfig } from "../../agent/self-update/config.js";
import { nextScheduledRun } from "../../agent/self-update/cli.js";

/** argv printing what `systemctl list-units --state=failed --plain --no-legend` prints. */
const listing = (...lines: string[]) => ["printf", "%s\\n", ...lines];

describe("failed units", () => {
  it("reports failed units without stopping the run when none of them is required", async () => {
    const r = await checkFailedUnits(listing("backup.service loaded failed failed Nightly backup", "mnt-nas.mount loaded failed failed /mnt/nas"), ["nix-daemon.service"]);
    expect(r).toEqual({ check: "failed-units", ok: true, detail: "failed units (not required, the run goes ahead): backup.service, mnt-nas.mount" });
    expect(await checkFailedUnits(listing(""), [])).toEqual({ check: "failed-units", ok: true, detail: "no failed units" });
  });

  it("stops the run when a required unit failed", async () => {
    const r = await checkFailedUnits(listing("backup.service loaded failed failed Backup", "nix-daemon.service loaded failed failed Nix Daemon"), ["nix-daemon.service", "sshd.service"]);
    expect(r).toEqual({ check: "failed-units", ok: false, detail: "required unit(s) failed: nix-daemon.service (systemctl status nix-daemon.service)" });
  });

  it("ignores lines that name no unit and bounds the detail", async () => {
    const many = Array.from({ length: 12 }, (_, i) => `u${i}.service loaded failed failed U`);
    const r = await checkFailedUnits(listing("● not-a-unit", "; rm -rf /", ...many), []);
    expect(r.detail).toBe(`failed units (not required, the run goes ahead): ${many.slice(0, 10).map((l) => l.split(" ")[0]).join(", ")} and 2 more`);
  });

  it("stops only when something is required and the list cannot be read", async () => {
    expect(await checkFailedUnits(["/nonexistent/systemctl"], [])).toMatchObject({ ok: true, detail: expect.stringContaining("cannot list failed units") });
    expect(await checkFailedUnits(["false"], ["nix-daemon.service"])).toMatchObject({ ok: false, detail: "cannot list failed units (false exited 1)" });
  });

  it("runs with the others, on by default and off by config", async () => {
    const base = { host: "web1", checkoutDir: "/x" };
    const on = parseSelfUpdateConfig({ ...base, health: { disk: { enabled: false }, systemState: { enabled: false }, uptime: { enabled: false }, failedUnits: { argv: listing("a.service loaded failed failed A"), required: ["a.service"] } } });
    expect(await runHealthChecks(on.health)).toEqual([{ check: "failed-units", ok: false, detail: expect.stringContaining("a.service") }]);
    const off = parseSelfUpdateConfig({ ...base, health: { disk: { enabled: false }, systemState: { enabled: false }, uptime: { enabled: false }, failedUnits: { enabled: false } } });
    expect(await runHealthChecks(off.health)).toEqual([]);
    expect(() => parseSelfUpdateConfig({ ...base, health: { failedUnits: { required: ["nix daemon"] } } })).toThrow(/required/);
  });
});

describe("status on launchd", () => {
  it("does not ask systemctl for the next run when nextRunArgv is null", async () => {
    const cfg = parseSelfUpdateConfig({ host: "mac", checkoutDir: "/x", nextRunArgv: null });
    expect(await nextScheduledRun(cfg)).toBe("not queryable (launchd runs it at its StartCalendarInterval)");
    const systemd = parseSelfUpdateConfig({ host: "web1", checkoutDir: "/x", nextRunArgv: ["printf", "NextElapseUSecRealtime=Sun 2026-12-06 03:17:00 UTC\\n"] });
    expect(await nextScheduledRun(systemd)).toBe("Sun 2026-12-06 03:17:00 UTC");
  });
});
